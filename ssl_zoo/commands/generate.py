"""`ssl-zoo generate` (a GPT continues a prompt) and `ssl-zoo fill` (a BERT's candidates for each
[MASK]); `load_text_model` serves them, `ssl-zoo icl`, `ssl-zoo serve` and the Python API."""

from omegaconf import DictConfig

from ssl_zoo.build import require_values
from ssl_zoo.checkpoint import load_method, pick_device
from ssl_zoo.errors import UserError
from ssl_zoo.eval.generate import SamplingSettings, fill_masks, generate_text
from ssl_zoo.nn.packed import pack_linears
from ssl_zoo.precision import inference_dtype

WHAT_FOR = {"gpt": "generate", "bert": "fill"}


def load_text_model(checkpoint: str, method_names: str | tuple[str, ...], device: str = "auto", command: str | None = None,
                    precision: str = "32"):
    """The trained method in eval mode on `device`, its weights in `precision` (precision.inference_dtype;
    scoring keeps fp32), refusing a checkpoint of another kind than method_names."""
    names = (method_names,) if isinstance(method_names, str) else tuple(method_names)
    dtype = inference_dtype(precision, pick_device(device))  # a bad value is refused before the checkpoint is read
    method, _ = load_method(checkpoint, device)
    if method.name not in names:
        other = WHAT_FOR.get(method.name)
        hint = f"use `ssl-zoo {other}` with it" if other else "pass a checkpoint of a text model"
        raise UserError(
            f"{checkpoint} holds a {method.name} model, but `{command or WHAT_FOR[names[0]]}` needs a "
            f"{' or '.join(names)} checkpoint; {hint}"
        )
    pack_linears(method.to(dtype).eval())  # quicker products without gradients on a CPU (nn/packed.py)
    return method


def generate(cfg: DictConfig) -> None:
    require_values(cfg)
    settings = SamplingSettings(cfg.max_new_tokens, cfg.temperature, cfg.top_k, cfg.top_p, cfg.seed)
    settings.check()
    method = load_text_model(cfg.checkpoint, "gpt", cfg.device, precision=cfg.precision)
    pieces = generate_text(method, str(cfg.prompt), settings, compile=cfg.compile)  # refuses a bad prompt before printing it
    print(cfg.prompt, end="", flush=True)
    for piece in pieces:
        print(piece, end="", flush=True)
    print()


def fill(cfg: DictConfig) -> None:
    require_values(cfg)
    method = load_text_model(cfg.checkpoint, "bert", cfg.device)
    candidates = fill_masks(method, str(cfg.text), cfg.top_k)
    for n, options in enumerate(candidates, 1):
        print(f"[MASK] {n}:")
        for token, prob in options:
            print(f"  {prob:6.3f}  {token!r}")
    print(f"top-1: {top_1(str(cfg.text), candidates)}")


def top_1(text: str, candidates: list[list[tuple[str, float]]]) -> str:
    """The text with each [MASK] replaced by its most likely candidate."""
    for options in candidates:
        text = text.replace("[MASK]", options[0][0], 1)
    return text
