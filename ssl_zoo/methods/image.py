"""What the image methods share: random views of the uint8 batch drawn on the device (views.py), a
projector MLP after the encoder (for the methods that compare embeddings), the probe's features (the encoder's pooled output of the image,
normalised as the views are) and two views of the same images for the probe's alignment diagnostic."""

from typing import Annotated

import torch
from torch import nn
from torch.utils.data import DataLoader

from ssl_zoo.data.base import collate
from ssl_zoo.methods.base import SSLMethod
from ssl_zoo.errors import UserError
from ssl_zoo.nn.heads import mlp
from ssl_zoo.nn.vit import ViT
from ssl_zoo.settings import Range


class ImageMethod(SSLMethod):
    modality = "image"

    def __init__(self, backbone: nn.Module, views: list[nn.Module],
                 projector_hidden_dim: Annotated[int | None, Range(1, whole=True, nullable=True)] = None,
                 projector_dim: Annotated[int | None, Range(1, whole=True, nullable=True)] = None, **base):
        super().__init__(backbone, **base)
        self.views = nn.ModuleList(views)
        if projector_dim is not None:  # the joint-embedding methods; MAE and AIM regress pixels instead
            self.projector = mlp(backbone.out_dim, projector_hidden_dim, projector_dim)

    def view(self, i: int, images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """View i of each image, by recipe i (or the last one): drawn whole from the uint8 batch
        (B, 3, H, W); or, where the loader has cropped every view from the full-resolution picture
        already (image_folder: (B, V, 3, S, S)), the rest of the recipe applied to crop i."""
        recipe = self.views[min(i, len(self.views) - 1)]
        return recipe(images, g) if images.ndim == 4 else recipe(images[:, i], g, crop=False)

    def embed(self, images):
        return self.backbone(self.views[0].normalize(images))

    @torch.no_grad()
    def positive_pair(self, dataset, seed: int, max_items: int = 512):
        images, _ = next(iter(DataLoader(dataset, batch_size=max_items, collate_fn=collate)))  # the first max_items
        images = images.to(self.device)
        g = torch.Generator(device=self.device).manual_seed(seed)
        was_training = self.training
        self.eval()
        a, b = (self.backbone(self.view(i, images, g)).float().cpu() for i in (0, 1))
        self.train(was_training)
        return a, b


def require_vit(backbone: nn.Module, method: str) -> None:
    """The patch-based methods (MAE, AIM) need the ViT front end, not a CNN."""
    if not isinstance(backbone, ViT):
        raise UserError(f"method={method} reads image patches: it needs a ViT encoder (model=vit_nano, vit_tiny or vit_small), "
                        f"not {type(backbone).__name__}")
