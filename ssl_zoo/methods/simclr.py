"""SimCLR (Chen et al., 2020): pull two views of an image together, push other images away."""

from typing import Annotated

import torch
from torch import nn

from ssl_zoo.losses import nt_xent
from ssl_zoo.methods.image import ImageMethod
from ssl_zoo.settings import Range


class SimCLR(ImageMethod):
    name = "simclr"
    objective = "joint-embedding"

    def __init__(self, backbone: nn.Module, views: nn.Module, temperature: Annotated[float, Range(0, above=True)] = 0.2, projector_hidden_dim: Annotated[int, Range(1, whole=True)] = 512,
                 projector_dim: Annotated[int, Range(1, whole=True)] = 128, **base):
        super().__init__(backbone, [views], projector_hidden_dim, projector_dim, **base)  # symmetric: one recipe
        self.temperature = temperature

    def ssl_step(self, images):
        g = self.step_generator()
        x1, x2 = self.view(0, images, g), self.view(1, images, g)  # two random views of each image, one recipe
        h1, h2 = self.backbone(x1), self.backbone(x2)  # (B, D) representations
        z1, z2 = self.projector(h1), self.projector(h2)  # (B, P) projections
        # Under DDP every rank scores its views against the views of all ranks (sync_grads keeps the
        # gradient flowing back to the rank that made each projection).
        if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
            z1, z2 = (self.all_gather(z, sync_grads=True).flatten(0, 1) for z in (z1, z2))
        self.log("train/negatives", 2.0 * len(z1) - 2)  # per anchor: all other views but its positive
        return nt_xent(z1, z2, self.temperature), h1
