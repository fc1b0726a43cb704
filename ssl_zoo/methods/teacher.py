"""The momentum teacher, owned once: an EMA copy of online modules (parameters averaged, buffers copied),
its momentum schedule, and its update after every optimizer step. BYOL's target network and data2vec's
teacher are this; so will be those of the methods that follow them (MoCo v3, DINO, iBOT, I-JEPA).

    class MyMethod(MomentumTeacher, ImageMethod):
        def __init__(self, ...):
            ...
            self.target = ema_copy(self.backbone)
            self.init_momentum("cosine", tau_base=0.99)      # 0.99 -> 1 over the run
        def teacher_pairs(self):
            return [(self.backbone, self.target)]
"""

import copy
import math

import torch
from torch import nn


SCHEDULES = ("cosine", "linear", "constant")  # BYOL's and DINO's; data2vec's; lightly's CIFAR-10 BYOL recipe


def momentum(schedule: str, step: int, total_steps: int, tau_base: float, tau_end: float = 1.0) -> float:
    """The EMA momentum at `step` of `total_steps`, from tau_base to tau_end: cosine (BYOL: tau = tau_end -
    (tau_end - tau_base) (cos(pi k / K) + 1) / 2), linear (data2vec), or constant (tau_base throughout)."""
    progress = min(1.0, step / max(1, total_steps))
    if schedule == "constant":
        return tau_base
    if schedule == "cosine":
        return tau_end - (tau_end - tau_base) * (math.cos(math.pi * progress) + 1) / 2
    return tau_base + (tau_end - tau_base) * progress


def ema_copy(module: nn.Module) -> nn.Module:
    """A teacher: the same architecture and weights, no gradients, moved only by update_momentum."""
    return copy.deepcopy(module).requires_grad_(False)


@torch.no_grad()
def update_momentum(online: nn.Module, target: nn.Module, tau: float) -> None:
    """target <- tau * target + (1 - tau) * online, parameter by parameter; buffers are copied."""
    for p_t, p_o in zip(target.parameters(), online.parameters()):
        p_t.mul_(tau).add_(p_o.detach(), alpha=1 - tau)
    for b_t, b_o in zip(target.buffers(), online.buffers()):
        b_t.copy_(b_o)


class MomentumTeacher:
    """A mixin for the methods with momentum teachers (listed before the method's base class). The method
    says which (online, teacher) modules follow each other (teacher_pairs) and calls init_momentum; the
    teachers move after each optimizer step, not in on_train_batch_end: that hook runs after the
    checkpoint callback's, and a checkpoint must hold the teacher of the step it records."""

    def init_momentum(self, schedule: str, tau_base: float, tau_end: float = 1.0) -> None:
        # schedule: one of SCHEDULES (declared where a method takes it, checked at start-up)
        self.tau_schedule, self.tau_base, self.tau_end = schedule, tau_base, tau_end

    def teacher_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        raise NotImplementedError

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        tau = momentum(self.tau_schedule, self.global_step, int(self.trainer.estimated_stepping_batches), self.tau_base,
                       self.tau_end)
        for online, teacher in self.teacher_pairs():
            update_momentum(online, teacher, tau)
        self.log("train/tau", tau)
