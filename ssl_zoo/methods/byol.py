"""BYOL (Grill et al., 2020): predict a slowly moving target network's projection of another view."""

from typing import Annotated

import torch
from torch import nn

from ssl_zoo.losses import byol_loss
from ssl_zoo.methods.image import ImageMethod
from ssl_zoo.methods.teacher import SCHEDULES, MomentumTeacher, ema_copy
from ssl_zoo.nn.heads import mlp
from ssl_zoo.settings import OneOf, Range


class BYOL(MomentumTeacher, ImageMethod):
    name = "byol"
    objective = "joint-embedding"

    def __init__(self, backbone: nn.Module, view_a: nn.Module, view_b: nn.Module, projector_hidden_dim: Annotated[int, Range(1, whole=True)] = 1024,
                 projector_dim: Annotated[int, Range(1, whole=True)] = 256, tau_base: Annotated[float, Range(0, 1)] = 0.99,
                 tau_schedule: Annotated[str, OneOf(SCHEDULES)] = "cosine", **base):
        # Asymmetric views: blur 1.0 / 0.1, solarize 0 / 0.2 (conf/method/byol.yaml).
        super().__init__(backbone, [view_a, view_b], projector_hidden_dim, projector_dim, **base)
        self.init_momentum(tau_schedule, tau_base)  # the paper: cosine from 0.99 to 1
        self.predictor = mlp(projector_dim, projector_hidden_dim, projector_dim)
        # The target network: same architecture, no gradients, moved only by EMA of the online one.
        self.target_backbone = ema_copy(backbone)
        self.target_projector = ema_copy(self.projector)

    def teacher_pairs(self):
        return [(self.backbone, self.target_backbone), (self.projector, self.target_projector)]

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
