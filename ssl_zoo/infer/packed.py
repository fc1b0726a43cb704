"""Linear layers with their weights prepacked for oneDNN, for inference on a CPU.

`F.linear` on a CPU re-lays out a bf16 weight for its kernel at every call, and MKL's fp32 product is
slow at the few rows of decoding (1-8 tokens a step). oneDNN's prepacked weight (what torch.compile's
freezing pass uses, `torch.ops.mkldnn`) computes the same products quicker: the baby GPT's 24 products
at one row 1.52 -> 0.72 ms in bf16 (bit for bit the same on the AVX512-BF16 CPU measured) and
3.48 -> 1.72 ms in fp32 (within 1e-6).
Its call costs about 20 us whatever the size, so a small fp32 weight stays with F.linear (MKL is
quicker below about 400k weights); bf16 is quicker packed at every size measured (docs/benchmarks.md,
"Decoding: prepacked weights, an fp32 cache, inference mode").

`pack_linears(model)` turns every nn.Linear of a model into a PackedLinear: the same parameters and
state_dict, the packed copy made at the first call without gradients and again whenever the weight
changes (its tensor, dtype or version) or the module moves (`.to()`). With gradients, under autocast,
off the CPU, for inference tensors, under torch.compile (its freezing packs the weights itself), or in bf16 on a CPU without oneDNN's bf16 path (no AVX512) it is
nn.Linear. The packed copy sits beside the weight: a packed model's linear weights take twice the
memory (a tied output layer's copy included), the price of loading for inference only.
"""

import functools

import torch
import torch.nn.functional as F
from torch import nn

ROWS_HINT = 8  # the rows oneDNN lays the weight out for: quick at 1 to 64 rows
FP32_MIN_WEIGHTS = 400_000  # fp32 weights smaller than this: MKL's F.linear is quicker (measured, see above)


def can_pack() -> bool:
    """This torch has oneDNN, its prepacked linear ops, and asks autocast by device (2.4 on)."""
    return torch.__version__ >= (2, 4) and torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


@functools.cache
def packs(dtype: torch.dtype) -> bool:
    """Weights of this dtype can be packed here (oneDNN's bf16 path needs AVX512 or AVX-NE-CONVERT)."""
    return dtype == torch.float32 or (dtype == torch.bfloat16 and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()))


class PackedLinear(nn.Linear):
    _packed: torch.Tensor | None = None
    _source: torch.Tensor | None = None  # the weight it was packed from (kept: its memory is not reused)
    _source_version: int = -1

    def packed_weight(self) -> torch.Tensor:
        w = self.weight
        source = self._source
        if source is None or source.data_ptr() != w.data_ptr() or source.dtype != w.dtype or w._version != self._source_version:
            self._packed = torch.ops.mkldnn._reorder_linear_weight(w.detach(), ROWS_HINT)
            self._source, self._source_version = w.detach(), w._version
        return self._packed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if (torch.is_grad_enabled() or torch.compiler.is_compiling() or x.device.type != "cpu" or x.dtype != w.dtype or torch.is_autocast_enabled("cpu")
                or w.is_inference() or not packs(w.dtype) or (w.dtype == torch.float32 and w.numel() < FP32_MIN_WEIGHTS)):
            return F.linear(x, w, self.bias)
        return torch.ops.mkldnn._linear_pointwise(x, self.packed_weight(), self.bias, "none", [], "")

    def _apply(self, fn, recurse=True):  # .to(), .float(), ...: the packed copy is made again when needed
        self._packed = self._source = None
        return super()._apply(fn, recurse)

    def __getstate__(self):  # copies and pickles leave the packed weight behind (oneDNN tensors do not copy)
        state = dict(super().__getstate__())
        for name in ("_packed", "_source", "_source_version"):
            state.pop(name, None)
        return state


def pack_linears(model: nn.Module) -> nn.Module:
    """Every nn.Linear of model (in place) a PackedLinear, where this torch can pack; returns model."""
    if can_pack():
        for module in model.modules():
            if type(module) is nn.Linear:
                module.__class__ = PackedLinear  # the same parameters, hooks and state_dict keys
    return model
