"""Settings declared where their component declares its parameters, and checked from there at start-up.

A component (a method, a datamodule, an encoder, a config dataclass) says what each setting may be in
the annotation of the parameter that takes it:

    def __init__(self, backbone, temperature: Annotated[float, Range(0, above=True)] = 0.2, **base): ...
    @dataclass
    class ProbeConfig:
        knn_k: Annotated[int, Range(1, whole=True)] = 20

`check(prefix, values, component)` checks the config node `values` of that component against what it
and its bases declare (a subclass hands its other settings on through **kwargs), before anything is
built, so that a bad value costs one line (BadValue, naming the key) and no wait. A node that another
component reads whole (a method's `optim`) is declared `Nested(OptimConfig)`. Settings that have no
constructor of ours (Lightning's trainer, a command's own keys) are declared as a dict {name: Range}.
"""

import functools
import importlib
import inspect
import re
from dataclasses import dataclass

from ssl_zoo.errors import BadValue, check_range, in_range, range_text


@dataclass(frozen=True)
class Range:
    """A number within [low, high]; above / below: low / high itself excluded; whole: an integer; nullable: or null."""

    low: float | None = None
    high: float | None = None
    whole: bool = False
    above: bool = False
    below: bool = False
    nullable: bool = False

    def check(self, key: str, value) -> None:
        check_range(key, value, self.low, self.high, self.nullable, self.whole, self.above, self.below)


@dataclass(frozen=True)
class OneOf:
    """One of a few values, of the same type too (1 == True in Python, and a flag takes true or false only)."""

    choices: tuple

    def check(self, key: str, value) -> None:
        if any(value == c and type(value) is type(c) for c in self.choices):
            return
        shown = as_typed(value)
        if isinstance(value, str) and value.lower() in map(as_typed, self.choices):
            shown = f"'{value}' (a string)"  # a quoted 'true', not the flag
        raise BadValue(key, f"{key}={shown} is not one of: {', '.join(dict.fromkeys(map(as_typed, self.choices)))}")


@dataclass(frozen=True)
class Numbers:
    """A list of numbers, each within `each`; length: exactly this many (None: one or more); ordered: each
    at least the one before (a range given as [low, high])."""

    each: Range
    length: int | None = None
    ordered: bool = False

    def check(self, key: str, value) -> None:
        e = self.each
        if not (isinstance(value, (list, tuple)) and (len(value) == self.length if self.length else len(value) >= 1)
                and all(in_range(v, e.low, e.high, e.whole, e.above, e.below) for v in value)):
            count = f"{self.length} numbers" if self.length else "a list of one or more numbers"
            raise BadValue(key, f"{key}={as_typed(value)} must be {count}, each {range_text(e.low, e.high, e.whole, e.above, e.below)}")
        if self.ordered and list(value) != sorted(value):
            raise BadValue(key, f"{key}={as_typed(value)} is not in order; give it low to high: {as_typed(sorted(value))}")


@dataclass(frozen=True)
class Names:
    """A list of names (words, packages, task families): at least `at_least` of them, none twice. A plain
    string is refused (data.words=yes would otherwise be read as the list of its letters) unless `single`:
    the component reads it as a list of that one name."""

    at_least: int = 1
    nullable: bool = False
    single: bool = False

    def check(self, key: str, value) -> None:
        if (value is None and self.nullable) or (isinstance(value, str) and self.single and self.at_least <= 1):
            return
        if not (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)):
            example = f"[{value}]" if isinstance(value, str) else "[a, b]"
            raise BadValue(key, f"{key}={as_typed(value)} must be a list of names, e.g. {key}={example}")
        if len(value) < self.at_least:
            raise BadValue(key, f"{key}={as_typed(value)} must name at least {self.at_least}")
        if twice := sorted({v for v in value if list(value).count(v) > 1}):
            raise BadValue(key, f"{key}={as_typed(value)} names {', '.join(twice)} more than once; give each once")


@dataclass(frozen=True)
class Matches:
    """A string of a given form (a regular expression, matched whole), said in words by `meaning`; or null
    (nullable), or a mapping (mapping: the setting's other form, Lightning's max_time as {hours: 1})."""

    pattern: str
    meaning: str
    nullable: bool = False
    mapping: bool = False

    def check(self, key: str, value) -> None:
        if (value is None and self.nullable) or (isinstance(value, dict) and self.mapping):
            return
        if not (isinstance(value, str) and re.fullmatch(self.pattern, value)):
            raise BadValue(key, f"{key}={as_typed(value)} is not {self.meaning}")


@dataclass(frozen=True)
class Refused:
    """A setting ssl-zoo gives itself (the Trainer's run folder, loggers, callbacks): a value for it is
    refused, saying what to set instead."""

    instead: str

    def check(self, key: str, value) -> None:
        raise BadValue(key, f"{key} is set by ssl-zoo itself, not on the command line; drop it ({self.instead})")


@dataclass(frozen=True)
class Either:
    """What passes one of `options` (a number of steps, or a fraction of an epoch); `meaning` says what in words."""

    options: tuple
    meaning: str

    def check(self, key: str, value) -> None:
        for option in self.options:
            try:
                return option.check(key, value)
            except BadValue:
                continue
        raise BadValue(key, f"{key}={as_typed(value)} is out of range; it must be {self.meaning}")


@dataclass(frozen=True)
class Nested:
    """A setting that is a node of another component's settings (a method's optim: OptimConfig)."""

    component: object


FLAG = OneOf((True, False))
# a command's file or folder: one path (not a list), not an empty string (which would silently mean "unset")
PATH = Matches(r"(?s)\s*\S.*", "a path (one, not empty)")
PATH_OR_NULL = Matches(PATH.pattern, PATH.meaning, nullable=True)
KINDS = (Range, OneOf, Numbers, Names, Matches, Either, Nested)  # what an annotation may declare
# what a plain annotation says, where nothing more is declared: a flag takes true or false only (not
# "maybe"), an int a whole number, a float a finite number, a str a string (not null, a number or a list:
# method.sample_prompt=null would fail only after training; a text that looks like a number is quoted)
TEXT = Matches(r"(?s).*", "a string (quote a text that looks like a number or null: '5')")
PLAIN = {bool: FLAG, int: Range(whole=True), float: Range(), str: TEXT,
         bool | None: OneOf((True, False, None)), int | None: Range(whole=True, nullable=True),
         float | None: Range(nullable=True), str | None: Matches(TEXT.pattern, TEXT.meaning, nullable=True)}
PLAIN |= {name: PLAIN[kind] for kind, name in ((bool, "bool"), (int, "int"), (float, "float"), (str, "str"),
                                              (bool | None, "bool | None"), (int | None, "int | None"),
                                              (float | None, "float | None"), (str | None, "str | None"))}


def as_typed(value) -> str:
    """A config value as it is typed on the command line (true, null, [0.9, 0.999])."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(as_typed, value)) + "]"
    if value is None or value == "":
        return "null" if value is None else "''"  # an empty string, as it is typed
    return str(value).lower() if isinstance(value, bool) else str(value)


@functools.cache
def declared(component: type) -> dict[str, Range | OneOf | Nested]:
    """{parameter: what it may be} of a class: the annotated parameters of its __init__ and of its
    bases' (a dataclass's __init__ carries its fields' annotations), and of its `settings_class` (a
    model built from a config dataclass: Transformer from TransformerConfig). In our classes a plain
    bool, int, float or str annotation declares a flag, a whole number, a finite number, a string (PLAIN)."""
    found = dict(declared(component.settings_class)) if hasattr(component, "settings_class") else {}
    for klass in reversed(component.__mro__):
        init = vars(klass).get("__init__")
        if init is None or klass is object:
            continue
        # the annotations as written, not evaluated: another library's class (a Lightning logger) may annotate
        # with names it never imports, and ours are objects (Annotated[...]), never strings
        for name, hint in getattr(init, "__annotations__", {}).items():
            marks = [m for m in getattr(hint, "__metadata__", ()) if isinstance(m, KINDS)]
            if marks:
                found[name] = marks[-1]
            elif ours(klass) and _hashable(hint) and hint in PLAIN and name not in found:  # a base's declaration says more
                found[name] = PLAIN[hint]  # (another library's plain bool may take more: a logger's offline=auto)
    return found


def find_class(target: str):
    """The class (or function) a `_target_` names, or None where it cannot be imported (hydra's get_class would
    log an error of its own: a line before the one-line refusal)."""
    module, _, attribute = str(target).rpartition(".")
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError, ValueError):
        return None


def ours(klass: type) -> bool:
    return klass.__module__.startswith("ssl_zoo")


def _hashable(hint) -> bool:
    try:
        hash(hint)
    except TypeError:
        return False
    return True


def check(prefix: str, values: dict, component) -> None:
    """Refuse a setting of the node `values` (the config node at `prefix`, e.g. "method.") that is not
    what `component` declares it may be, in one line naming the key."""
    for name, setting in (component if isinstance(component, dict) else declared(component)).items():
        if name not in values:
            continue
        if isinstance(setting, Nested):
            takes = accepted(setting.component) if isinstance(setting.component, type) else None
            if isinstance(values[name], dict) and takes is not None and (unknown := sorted(set(values[name]) - takes)):
                raise BadValue(f"{prefix}{name}.{unknown[0]}", f"{prefix}{name}.{unknown[0]} is not a setting of {prefix}{name}; "
                               f"its settings are: {', '.join(sorted(takes))}")
            if isinstance(values[name], dict):
                check(f"{prefix}{name}.", values[name], setting.component)
            elif values[name] is not None:
                raise BadValue(f"{prefix}{name}", f"{prefix}{name}={as_typed(values[name])} is a group of settings, not a value; "
                               f"set one of them ({prefix}{name}.<name>=...)")
            elif isinstance(setting.component, type):  # null: the code's defaults, which the run's config.yaml would not say
                raise BadValue(f"{prefix}{name}", f"{prefix}{name}=null would leave its settings to defaults the run does not "
                               f"record; set the ones to change ({prefix}{name}.<name>=...) and leave {prefix}{name} itself out")
        else:
            setting.check(f"{prefix}{name}", values[name])
    if callable(together := getattr(component, "check_together", None)):  # the component's relations between its settings
        together(prefix, values)



@functools.cache
def accepted(component: type) -> frozenset[str] | None:
    """The names a class's constructor takes: its own parameters and, through **kwargs, its bases' up to
    the first constructor that takes no **kwargs or is not ours (a Lightning or torch base takes none
    of a config's keys). None when that cannot be known (a constructor of another library)."""
    if not ours(component):
        return None
    names: set[str] = set(accepted(component.settings_class) or ()) if hasattr(component, "settings_class") else set()
    for klass in component.__mro__:
        init = vars(klass).get("__init__")
        if init is None:
            continue
        if not ours(klass):
            break
        parameters = list(inspect.signature(init).parameters.values())[1:]
        names |= {p.name for p in parameters if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return frozenset(names)
