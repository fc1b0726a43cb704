"""MAE (He et al. 2022): hide most of an image's patches, encode only the visible ones, and let a light
decoder reconstruct the hidden patches' (per-patch normalised) pixels."""

from typing import Annotated

import torch
from torch import nn

from ssl_zoo.errors import BadValue
from ssl_zoo.losses import masked_mse, normalised_patches
from ssl_zoo.masking import random_patches
from ssl_zoo.methods.image import ImageMethod, require_vit
from ssl_zoo.nn.transformer import Transformer, mean_pool
from ssl_zoo.nn.vit import ViT
from ssl_zoo.settings import Range


def place(visible: torch.Tensor, encoded: torch.Tensor, filler: torch.Tensor, num_patches: int) -> torch.Tensor:
    """The decoder's input (B, N, C): each encoded visible patch (B, K, C) back at its index (visible
    (B, K)), the filler vector (C,) (the mask token) at every other one."""
    b, _, c = encoded.shape
    full = filler.to(encoded.dtype).expand(b, num_patches, c)
    return full.scatter(1, visible[..., None].expand(-1, -1, c), encoded)


class MAE(ImageMethod):
    name = "mae"
    objective = "masked"

    def __init__(self, backbone: ViT, views: nn.Module, mask_ratio: Annotated[float, Range(0, 1, above=True, below=True)] = 0.75,
                 decoder_layers: Annotated[int, Range(1, whole=True)] = 2, decoder_dim: Annotated[int, Range(1, whole=True)] = 64,
                 decoder_heads: Annotated[int, Range(1, whole=True)] = 4, norm_pix_loss: bool = True, **base):
        require_vit(backbone, self.name)
        if backbone.num_patches < 2:  # one patch: nothing to hide it among
            raise BadValue("model.patch_size", f"model.patch_size={backbone.patch_size} cuts the {backbone.image_size} px images "
                           "into 1 patch, and MAE hides most patches and predicts them from the rest; give a smaller "
                           "model.patch_size (e.g. 4 for 32 px)")
        if round((1 - mask_ratio) * backbone.num_patches) < 1:
            raise BadValue("method.mask_ratio", f"method.mask_ratio={mask_ratio} leaves no patch of the {backbone.num_patches} "
                           "visible; pick a lower ratio, e.g. 0.75")
        super().__init__(backbone, [views], **base)  # one recipe: random resized crop and flip only
        self.mask_ratio, self.norm_pix_loss = mask_ratio, norm_pix_loss
        # The decoder, narrower than the encoder: it gets the encoded visible patches projected to its
        # width, a learned mask token at every hidden place, and positions of its own.
        self.decoder = Transformer(input_dim=backbone.out_dim, block_size=backbone.num_patches, n_layer=decoder_layers,
                                   n_head=decoder_heads, n_embd=decoder_dim, causal=False)
        self.mask_token = nn.Parameter(0.02 * torch.randn(backbone.out_dim))
        self.pixel_head = nn.Linear(decoder_dim, backbone.patch_dim)

    def ssl_step(self, images):
        g = self.step_generator()
        x = self.view(0, images, g)  # (B, 3, S, S): a crop, normalised
        n = self.backbone.num_patches
        visible, hidden = random_patches(len(x), n, self.mask_ratio, g, x.device)  # (B, K), (B, N - K)
        encoded = self.backbone.tokens(x, keep=visible)  # (B, K, C): the encoder never sees a hidden patch
        decoded = self.decoder(place(visible, encoded, self.mask_token, n))  # (B, N, D)
        take = hidden[..., None]
        prediction = self.pixel_head(decoded).gather(1, take.expand(-1, -1, self.backbone.patch_dim))  # (B, N - K, P*P*3)
        target = self.backbone.patches(x).gather(1, take.expand(-1, -1, self.backbone.patch_dim))
        if self.norm_pix_loss:
            target = normalised_patches(target)
        return masked_mse(prediction, target), mean_pool(encoded)  # the loss is on the hidden patches only
