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
from dataclasses import dataclass

import inspect

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
        raise BadValue(key, f"{key}={shown} is not one of: {', '.join(map(as_typed, self.choices))}")


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
KINDS = (Range, OneOf, Numbers, Either, Nested)  # what an annotation may declare


def as_typed(value) -> str:
    """A config value as it is typed on the command line (true, null, [0.9, 0.999])."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(as_typed, value)) + "]"
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


@functools.cache
def declared(component: type) -> dict[str, Range | OneOf | Nested]:
    """{parameter: what it may be} of a class: the annotated parameters of its __init__ and of its
    bases' (a dataclass's __init__ carries its fields' annotations), and of its `settings_class` (a
    model built from a config dataclass: Transformer from TransformerConfig)."""
    found = dict(declared(component.settings_class)) if hasattr(component, "settings_class") else {}
    for klass in reversed(component.__mro__):
        init = vars(klass).get("__init__")
        if init is None or klass is object:
            continue
        # the annotations as written, not evaluated: another library's class (a Lightning logger) may annotate
        # with names it never imports, and ours are objects (Annotated[...]), never strings
        for name, hint in getattr(init, "__annotations__", {}).items():
            found.update({name: m for m in getattr(hint, "__metadata__", ()) if isinstance(m, KINDS)})
    return found


def check(prefix: str, values: dict, component) -> None:
    """Refuse a setting of the node `values` (the config node at `prefix`, e.g. "method.") that is not
    what `component` declares it may be, in one line naming the key."""
    for name, setting in (component if isinstance(component, dict) else declared(component)).items():
        if name not in values:
            continue
        if isinstance(setting, Nested):
            if isinstance(values[name], dict):
                check(f"{prefix}{name}.", values[name], setting.component)
        else:
            setting.check(f"{prefix}{name}", values[name])



@functools.cache
def accepted(component: type) -> frozenset[str] | None:
    """The names a class's constructor takes: its own parameters and, through **kwargs, its bases' up to
    the first constructor that takes no **kwargs or is not ours (a Lightning or torch base takes none
    of a config's keys). None when that cannot be known (a constructor of another library)."""
    if not component.__module__.startswith("ssl_zoo"):
        return None
    names: set[str] = set(accepted(component.settings_class) or ()) if hasattr(component, "settings_class") else set()
    for klass in component.__mro__:
        init = vars(klass).get("__init__")
        if init is None:
            continue
        if not klass.__module__.startswith("ssl_zoo"):
            break
        parameters = list(inspect.signature(init).parameters.values())[1:]
        names |= {p.name for p in parameters if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return frozenset(names)
