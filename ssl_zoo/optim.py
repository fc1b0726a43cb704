"""Optimizers and the learning-rate schedule shared by every method."""

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import Annotated

import torch
from torch import nn

from ssl_zoo.errors import BadValue, UserError
from ssl_zoo.settings import Numbers, OneOf, Range


@dataclass
class OptimConfig:
    name: Annotated[str, OneOf(("adamw", "lars", "sgd"))] = "adamw"
    lr: Annotated[float, Range(0, above=True)] = 1e-3  # peak learning rate (for a global batch of 256 when scale_lr)
    weight_decay: Annotated[float, Range(0)] = 1e-4
    momentum: Annotated[float, Range(0, 1)] = 0.9  # sgd, lars
    trust: Annotated[float, Range(0, above=True)] = 1e-3  # lars: trust coefficient (the papers' 1e-3 assumes batches of thousands; solo-learn uses 0.02 at 256)
    betas: Annotated[tuple[float, float], Numbers(Range(0, 1, below=True), length=2)] = (0.9, 0.999)  # adamw
    warmup: Annotated[float, Range(0)] = 0.05  # warmup length: a fraction of all steps if < 1, else a number of steps
    min_lr_ratio: Annotated[float, Range(0, 1)] = 0.0  # cosine decays from lr to lr * min_lr_ratio
    scale_lr: bool = False  # linear scaling rule: lr * global_batch / 256 (SimCLR, BYOL)
    exclude_bias_and_norm: bool = True  # biases and norm weights: no weight decay, no LARS adaptation

    @classmethod
    def check_together(cls, prefix: str, values: dict) -> None:
        """momentum (sgd, lars) and trust (lars) given to an optimizer that does not read them are refused."""
        name = values.get("name", cls.name)
        for key, readers in (("momentum", ("sgd", "lars")), ("trust", ("lars",))):
            if key in values and values[key] != getattr(cls, key) and name not in readers:
                raise BadValue(f"{prefix}{key}", f"{prefix}{key}={values[key]} is read only by {' and '.join(readers)}, not "
                               f"{prefix}name={name}; drop it, or choose {prefix}name={readers[0]}")


class LARS(torch.optim.Optimizer):
    """SGD with momentum whose update of each tensor is scaled by trust * |w| / |g + wd w| (You et al. 2017).

    Param groups with `lars_adapt=False` (biases, norms) take plain SGD with momentum, as in SimCLR.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0, trust: float = 1e-3):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, trust=trust, lars_adapt=True))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                update = p.grad.add(p, alpha=group["weight_decay"])
                if group["lars_adapt"]:
                    w_norm, u_norm = p.norm(), update.norm()
                    ok = (w_norm > 0) & (u_norm > 0)
                    update = update * torch.where(ok, group["trust"] * w_norm / u_norm, torch.ones_like(w_norm))
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = update.clone()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(update)
                p.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


def param_groups(params: Iterable[nn.Parameter], weight_decay: float, exclude_bias_and_norm: bool) -> list[dict]:
    """Two groups of the trainable ones of params: matrices and conv kernels take weight decay; biases,
    norm weights and other 1-D parameters (MAE's mask token) do not."""
    decay, no_decay = [], []
    for p in params:
        if p.requires_grad:
            (no_decay if exclude_bias_and_norm and p.ndim <= 1 else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0, "lars_adapt": False},
    ]


def fusable(groups: list[dict], clipping: bool) -> bool:
    """Whether AdamW may be one fused kernel: every parameter on one kind of device that torch has the
    kernel for (CUDA; the CPU from torch 2.4), and no gradient clipping (Lightning refuses to clip
    under mixed precision for an optimizer that unscales its own gradients, as a fused one does).
    Lightning moves the model before it builds the optimizer. On the CPU the fused step takes 6 ms
    against foreach's 15 at the baby GPT's 10.7M parameters (docs/benchmarks.md)."""
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices as fused_devices
        kinds = set(fused_devices()) & {"cuda", "cpu"}
    except ImportError:  # an older torch: CUDA only
        kinds = {"cuda"}
    params = [p for g in groups for p in g["params"]]
    return not clipping and bool(params) and len({p.device.type for p in params}) == 1 and params[0].device.type in kinds


def build_optimizer(cfg: OptimConfig, groups: list[dict], lr: float, clipping: bool = False) -> torch.optim.Optimizer:
    if cfg.name == "lars":
        return LARS(groups, lr=lr, momentum=cfg.momentum, trust=cfg.trust)
    plain = [{k: v for k, v in g.items() if k != "lars_adapt"} for g in groups]  # a LARS-only option
    if cfg.name == "adamw":  # one fused kernel for every tensor's update
        return torch.optim.AdamW(plain, lr=lr, betas=tuple(cfg.betas), fused=fusable(plain, clipping) or None)
    if cfg.name == "sgd":
        return torch.optim.SGD(plain, lr=lr, momentum=cfg.momentum)
    raise UserError(f"unknown optimizer '{cfg.name}'; set method.optim.name to one of: adamw, lars, sgd")


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Multiplier of the peak lr at `step`: linear warmup, then cosine decay to min_ratio."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_cosine_scheduler(optimizer, cfg: OptimConfig, total_steps: int):
    warmup = int(cfg.warmup) if cfg.warmup >= 1 else round(cfg.warmup * total_steps)
    schedule = partial(warmup_cosine, warmup_steps=warmup, total_steps=total_steps, min_ratio=cfg.min_lr_ratio)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
