"""What the image methods share: random views of the uint8 batch drawn on the device (views.py), a
projector MLP after the encoder, and the probe's features (the encoder's pooled output of the
image, normalised as the views are)."""

from torch import nn

from ssl_zoo.methods.base import SSLMethod
from ssl_zoo.nn.heads import mlp


class ImageMethod(SSLMethod):
    modality = "image"

    def __init__(self, backbone: nn.Module, views: list[nn.Module], projector_hidden_dim: int, projector_dim: int, **base):
        super().__init__(backbone, **base)
        self.views = nn.ModuleList(views)
        self.projector = mlp(backbone.out_dim, projector_hidden_dim, projector_dim)

    def embed(self, images):
        return self.backbone(self.views[0].normalize(images))
