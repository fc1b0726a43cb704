"""Bad input is answered with one line that names the problem and the fix, never a traceback."""

import math


class UserError(Exception):
    """A problem with what the user asked for (config, file, checkpoint) that the user can fix."""


class BadValue(UserError):
    """A UserError about one named value (a setting, a request field): `serve` answers it with 422 naming it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def range_text(low=None, high=None, whole: bool = False, above: bool = False, below: bool = False) -> str:
    """What a value within these bounds is, in words: "a whole number at least 1", "a number above 0 and below 1"."""
    kind = "a whole number" if whole else "a number"
    if above:
        return f"{kind} above {low}" + (f" and {'below' if below else 'at most'} {high}" if high is not None else "")
    if low is None:
        return f"{kind} {'below' if below else 'at most'} {high}" if high is not None else kind
    if high is None:
        return f"{kind} at least {low}"
    return f"{kind} at least {low} and below {high}" if below else f"{kind} between {low} and {high}"


def in_range(value, low=None, high=None, whole: bool = False, above: bool = False, below: bool = False) -> bool:
    """Whether value is a finite number (whole: an integer) within [low, high] (above / below: that end excluded)."""
    ok = isinstance(value, int if whole else (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (low is None or (value > low if above else value >= low))
    return ok and (high is None or (value < high if below else value <= high))


def check_range(name: str, value, low=None, high=None, allow_none: bool = False, whole: bool = False,
                above: bool = False, below: bool = False) -> None:
    """Refuse a setting that is not a finite number (whole: a whole number) within [low, high] (above: low
    itself excluded; below: high itself excluded), naming it (BadValue)."""
    if (value is None and allow_none) or in_range(value, low, high, whole, above, below):
        return
    if isinstance(value, str) and _number(value):
        raise BadValue(name, f"{name}='{value}' is a string (quoted), not a number; give it unquoted ({name}={value})")
    shown = "null" if value is None else "''" if value == "" else value  # as typed on the command line
    raise BadValue(name, f"{name}={shown} is out of range; it must be {range_text(low, high, whole, above, below)}"
                   + (" (or null)" if allow_none else ""))


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def patch_grid_problem(image_size: int, patch_size: int) -> str | None:
    """Why `patch_size` cannot tile `image_size` x `image_size` images, or None when it can (the start-up
    check and the ViT itself give the same line)."""
    if patch_size < 1 or image_size % patch_size:
        return (f"data.image_size={image_size} is not a multiple of model.patch_size={patch_size}; "
                "pick a patch size that divides the image size (e.g. model.patch_size=4 for 32 px)")
    return None


def layer_problem(layer, n_layer: int, name: str = "probe_layer") -> str | None:
    """Why `layer` is no layer of a transformer of n_layer blocks (0 embeddings .. n_layer, -1 .. -(n_layer + 1), or
    "weighted": all of them), or None (the start-up check and the model itself give the same line)."""
    if layer == "weighted" or (isinstance(layer, int) and not isinstance(layer, bool) and -(n_layer + 1) <= layer <= n_layer):
        return None
    return (f"{name}={layer} is out of range: this model has layers 0 (embeddings) to {n_layer}, or -1 to -{n_layer + 1}, "
            "or 'weighted' (all of them)")


def one_line(error: BaseException) -> str:
    """The message of a UserError, also when a DataLoader worker re-raised it with its traceback."""
    text = str(error)
    marker = "UserError: "
    if "Original Traceback" in text and marker in text:
        text = text.rsplit(marker, 1)[1]
    return " ".join(text.split())


def l2_grid_problem(low, high, points) -> str | None:
    """What is wrong with the probe's log-spaced grid of L2 penalties (its ends and size), or None (the
    start-up check and ProbeConfig give the same line)."""
    number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)  # noqa: E731
    if not (number(low) and number(high) and low > 0 and high > 0):
        return (f"probe.l2_low={low} and probe.l2_high={high} are the ends of a log-spaced grid of L2 penalties: both must "
                "be numbers above 0, e.g. 1.0e-6 and 1.0 (for a penalty of 0, list it: probe.weight_decays=[0.0, ...])")
    if low > high:
        return f"probe.l2_low={low} is above probe.l2_high={high}; swap them"
    if not (isinstance(points, int) and not isinstance(points, bool) and points >= 2):
        return (f"probe.l2_points={points} must be a whole number of at least 2 (the grid's size from l2_low to l2_high, "
                "e.g. 7); for one penalty, list it: probe.weight_decays=[1.0e-4]")
    return None
