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

from ssl_zoo.errors import BadValue, check_range


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
class Nested:
    """A setting that is a node of another component's settings (a method's optim: OptimConfig)."""

    component: object


FLAG = OneOf((True, False))


def as_typed(value) -> str:
    """A config value as it is typed on the command line (true, null)."""
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


@functools.cache
def declared(component: type) -> dict[str, Range | OneOf | Nested]:
    """{parameter: what it may be} of a class: the annotated parameters of its __init__ and of its
    bases' (a dataclass's __init__ carries its fields' annotations)."""
    found = {}
    for klass in reversed(component.__mro__):
        init = vars(klass).get("__init__")
        if init is None or klass is object:
            continue
        # the annotations as written, not evaluated: another library's class (a Lightning logger) may annotate
        # with names it never imports, and ours are objects (Annotated[...]), never strings
        for name, hint in getattr(init, "__annotations__", {}).items():
            found.update({name: m for m in getattr(hint, "__metadata__", ()) if isinstance(m, (Range, OneOf, Nested))})
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

