"""The ViT front end (Dosovitskiy et al. 2021) on the shared transformer: an image (B, 3, H, W) is cut
into P x P patches in raster order, each flattened to P*P*3 values, and the patch vectors (B, N, P*P*3)
go through the transformer's vector input (a linear projection to n_embd) with one learned position
per patch. The same blocks serve GPT, BERT and the speech models; image methods read the mean-pooled
final states (B, n_embd), as SimCLR and BYOL read a CNN's pooled features.
"""

from typing import Annotated

import torch
from torch import nn

from ssl_zoo.errors import BadValue, UserError, patch_grid_problem
from ssl_zoo.nn.transformer import Transformer, mean_pool
from ssl_zoo.settings import OneOf, Range


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, P*P*C), N = (H/P)(W/P) in raster order; each patch's values ordered
    (row, column, channel), as MAE orders them."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)  # (B, C, h, P, w, P)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def unpatchify(patches: torch.Tensor, patch: int, height: int, width: int) -> torch.Tensor:
    """The inverse of patchify: (B, N, P*P*C) -> (B, C, H, W)."""
    b, n, d = patches.shape
    c, h, w = d // (patch * patch), height // patch, width // patch
    x = patches.reshape(b, h, w, patch, patch, c)  # (B, h, w, P, P, C)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(b, c, height, width)


class ViT(nn.Module):
    """Images (B, 3, S, S) -> pooled features (B, n_embd); `tokens` gives the per-patch states, of
    all patches or of a chosen subset (MAE's visible ones), with an optional attention mask (AIM)."""

    reads = ("image",)

    def __init__(self, image_size: int | None, patch_size: Annotated[int, Range(1, whole=True)] = 4, channels: Annotated[int, OneOf((3,))] = 3,
                 n_layer: Annotated[int, Range(1, whole=True)] = 4, n_head: Annotated[int, Range(1, whole=True)] = 4,
                 n_embd: Annotated[int, Range(1, whole=True)] = 128, dropout: Annotated[float, Range(0, 1, below=True)] = 0.0,
                 bias: bool = True):
        super().__init__()
        if image_size is None:
            raise BadValue("model.image_size", "model.image_size=null: a ViT needs the images' size; give model.image_size=N "
                           "(a multiple of model.patch_size), or set data.image_size=N, which it follows")
        if problem := patch_grid_problem(image_size, patch_size):
            raise UserError(problem)
        self.image_size, self.patch_size, self.channels = image_size, patch_size, channels
        self.num_patches = (image_size // patch_size) ** 2
        self.patch_dim = patch_size * patch_size * channels
        # Bidirectional by default (SimCLR, BYOL, MAE); AIM passes its prefix-causal mask.
        self.transformer = Transformer(input_dim=self.patch_dim, block_size=self.num_patches, n_layer=n_layer,
                                       n_head=n_head, n_embd=n_embd, dropout=dropout, bias=bias, causal=False)
        self.out_dim = n_embd

    def patches(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-1] != self.image_size or images.shape[-2] != self.image_size:
            raise UserError(f"this ViT reads {self.image_size} px images, not {images.shape[-2]} x {images.shape[-1]}; "
                            f"read the data at data.image_size={self.image_size}")
        return patchify(images, self.patch_size)  # (B, N, P*P*C)

    def tokens(self, images: torch.Tensor, keep: torch.Tensor | None = None, attn_mask: torch.Tensor | None = None,
               all_layers: bool = False, ffn_outputs: bool = False):
        """The states of the patches (B, N, C), or of the patches `keep` (B, K) indexes (each with its
        own position), or every layer's with all_layers, or every block's feed-forward output with ffn_outputs."""
        x = self.patches(images)
        positions = None
        if keep is not None:
            x = x.gather(1, keep[..., None].expand(-1, -1, x.shape[-1]))  # (B, K, P*P*C)
            positions = keep
        return self.transformer(x, positions=positions, attn_mask=attn_mask, all_layers=all_layers,
                                ffn_outputs=ffn_outputs)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return mean_pool(self.tokens(images))  # (B, n_embd)
