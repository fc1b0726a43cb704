"""AIM (El-Nouby et al. 2024): autoregressive image models. The patches of an image, in raster order,
are read by a transformer with prefix-causal attention (a random prefix sees itself both ways, every
later patch sees only those before it), and an MLP head predicts each next patch's normalised pixels.
Training with a prefix lets the probe read the encoder with bidirectional attention."""

from typing import Annotated

import torch
from torch import nn

from ssl_zoo.losses import masked_mse, normalised_patches
from ssl_zoo.masking import prefix_causal_mask
from ssl_zoo.methods.image import ImageMethod, require_vit
from ssl_zoo.nn.transformer import mean_pool
from ssl_zoo.nn.vit import ViT
from ssl_zoo.settings import Range


class AIM(ImageMethod):
    name = "aim"
    objective = "autoregressive"

    def __init__(self, backbone: ViT, views: nn.Module, prefix: bool = True, head_hidden_dim: Annotated[int, Range(1, whole=True)] = 256,
                 norm_pix_loss: bool = True, **base):
        require_vit(backbone, self.name)
        super().__init__(backbone, [views], **base)
        self.prefix, self.norm_pix_loss = prefix, norm_pix_loss
        c = backbone.out_dim
        self.head = nn.Sequential(nn.Linear(c, head_hidden_dim), nn.GELU(), nn.LayerNorm(head_hidden_dim),
                                  nn.Linear(head_hidden_dim, backbone.patch_dim))  # per position: (.., C) -> (.., P*P*3)

    def attention(self, batch: int, g: torch.Generator | None, device) -> torch.Tensor:
        """(B, N, N): a prefix of 1 .. N-1 patches per image when training with prefixes (uniform, as
        AIM), else plain causal."""
        n = self.backbone.num_patches
        if self.prefix and g is not None:
            prefix = torch.randint(1, n, (batch,), generator=g, device=device)
        else:
            prefix = torch.ones(batch, dtype=torch.long, device=device)
        return prefix_causal_mask(prefix, n)

    def predictions(self, x: torch.Tensor, attn_mask: torch.Tensor):
        """The head's prediction at each position t of patch t + 1 (B, N - 1, P*P*3), and the states (B, N, C)."""
        hidden = self.backbone.tokens(x, attn_mask=attn_mask)
        return self.head(hidden[:, :-1]), hidden

    def ssl_step(self, images):
        g = self.step_generator()
        x = self.view(0, images, g)  # (B, 3, S, S): a crop, normalised
        mask = self.attention(len(x), g, x.device)  # (B, N, N)
        prediction, hidden = self.predictions(x, mask)
        target = self.backbone.patches(x)[:, 1:]  # patch t + 1 for position t
        if self.norm_pix_loss:
            target = normalised_patches(target)
        prefix = mask[:, 0].sum(1)  # (B,): how many patches the first one sees = the prefix length
        after_prefix = torch.arange(1, self.backbone.num_patches, device=x.device)[None] >= prefix[:, None]  # (B, N - 1)
        return masked_mse(prediction, target, after_prefix), mean_pool(hidden)  # no loss inside the prefix

    def embed(self, images):
        x = self.views[0].normalize(images)
        if self.prefix:  # trained with prefixes: the whole image is one prefix (bidirectional)
            return self.backbone(x)
        return mean_pool(self.backbone.tokens(x, attn_mask=self.attention(len(x), None, x.device)))
