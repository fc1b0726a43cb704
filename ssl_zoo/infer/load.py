"""A trained text model ready for inference: read from its checkpoint, checked to be the kind a command
needs, its weights in the inference dtype and its linear layers packed (generate, fill, serve, icl,
lm-eval, the API)."""

import torch

from ssl_zoo.checkpoint import load_method
from ssl_zoo.device import computes_bf16, pick_device
from ssl_zoo.errors import BadValue, UserError
from ssl_zoo.infer.packed import pack_linears

INFERENCE = {"auto": None, "32": torch.float32, "bf16": torch.bfloat16}


def inference_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype a trained text model's weights are used in (`ssl-zoo generate` / `serve`: precision=).
    auto: bf16 where the device computes it natively, fp32 elsewhere; bf16: always. Decoding reads every
    weight once per token, so half the bytes is most of the speed (1.3-1.6x on an AVX512-BF16 CPU,
    docs/benchmarks.md). 32 (the default) writes fp32's text, the same for a stream alone and batched."""
    if str(precision) not in INFERENCE:
        raise BadValue("precision", f"precision={precision} is not one of: {', '.join(INFERENCE)}")
    if str(precision) != "auto":
        return INFERENCE[str(precision)]
    return torch.bfloat16 if computes_bf16(device) else torch.float32


WHAT_FOR = {"gpt": "generate", "bert": "fill"}


def load_text_model(checkpoint: str, method_names: str | tuple[str, ...], device: str = "auto", command: str | None = None,
                    precision: str = "32"):
    """The trained method in eval mode on `device`, its weights in `precision` (inference_dtype;
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
    pack_linears(method.to(dtype).eval())  # quicker products without gradients on a CPU (infer/packed.py)
    return method
