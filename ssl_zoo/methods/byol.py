"""BYOL (Grill et al., 2020): predict a slowly moving target network's projection of another view."""

import copy
import math

import torch
from torch import nn

from ssl_zoo.errors import UserError, check_range
from ssl_zoo.losses import byol_loss
from ssl_zoo.methods.image import ImageMethod
from ssl_zoo.nn.heads import mlp


def cosine_tau(step: int, total_steps: int, tau_base: float) -> float:
    """EMA momentum: tau = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2, from tau_base up to 1."""
    progress = min(1.0, step / max(1, total_steps))
    return 1 - (1 - tau_base) * (math.cos(math.pi * progress) + 1) / 2


TAU_SCHEDULES = ("cosine", "constant")  # the paper's schedule; or tau_base throughout (lightly's CIFAR-10 recipe option)


@torch.no_grad()
def update_momentum(online: nn.Module, target: nn.Module, tau: float) -> None:
    """target <- tau * target + (1 - tau) * online, parameter by parameter; buffers are copied."""
    for p_t, p_o in zip(target.parameters(), online.parameters()):
        p_t.mul_(tau).add_(p_o.detach(), alpha=1 - tau)
    for b_t, b_o in zip(target.buffers(), online.buffers()):
        b_t.copy_(b_o)


class BYOL(ImageMethod):
    name = "byol"
    objective = "joint-embedding"

    def __init__(self, backbone: nn.Module, view_a: nn.Module, view_b: nn.Module, projector_hidden_dim: int = 1024,
                 projector_dim: int = 256, tau_base: float = 0.99, tau_schedule: str = "cosine", **base):
        # Asymmetric views: blur 1.0 / 0.1, solarize 0 / 0.2 (conf/method/byol.yaml).
        super().__init__(backbone, [view_a, view_b], projector_hidden_dim, projector_dim, **base)
        check_range("method.tau_base", tau_base, 0.0, 1.0)
        if tau_schedule not in TAU_SCHEDULES:
            raise UserError(f"unknown method.tau_schedule '{tau_schedule}'; set it to one of: {', '.join(TAU_SCHEDULES)}")
        self.tau_base, self.tau_schedule = tau_base, tau_schedule
        self.predictor = mlp(projector_dim, projector_hidden_dim, projector_dim)
        # The target network: same architecture, no gradients, moved only by EMA of the online one.
        self.target_backbone = copy.deepcopy(backbone).requires_grad_(False)
        self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)

    def ssl_step(self, images):
        g = self.step_generator()
        x1, x2 = self.view(0, images, g), self.view(1, images, g)  # recipe a, recipe b
        h1, h2 = self.backbone(x1), self.backbone(x2)
        p1, p2 = self.predictor(self.projector(h1)), self.predictor(self.projector(h2))  # online
        with torch.no_grad():
            z1 = self.target_projector(self.target_backbone(x1))  # target
            z2 = self.target_projector(self.target_backbone(x2))
        # Symmetrised: each view predicts the target of the other, and the two terms are summed.
        return byol_loss(p1, z2) + byol_loss(p2, z1), h1

    def optimizer_step(self, *args, **kwargs) -> None:
        # The EMA follows each optimizer step here, not in on_train_batch_end: that hook runs after the
        # checkpoint callback's, and a checkpoint must hold the target of the step it records.
        super().optimizer_step(*args, **kwargs)
        tau = (self.tau_base if self.tau_schedule == "constant"
               else cosine_tau(self.global_step, int(self.trainer.estimated_stepping_batches), self.tau_base))
        update_momentum(self.backbone, self.target_backbone, tau)
        update_momentum(self.projector, self.target_projector, tau)
        self.log("train/tau", tau)
