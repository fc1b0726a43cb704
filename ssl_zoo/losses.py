"""Loss functions of the methods, as pure functions of tensors."""

import torch
import torch.nn.functional as F


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's InfoNCE (NT-Xent), written as a cross-entropy over similarities.

    z1, z2: (N, D) projections of two views of the same N images. Each of the 2N embeddings has one
    positive (the other view of its image) and 2N - 2 negatives; the mean over all 2N is returned.
    """
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # (2N, D)
    logits = z @ z.T / temperature  # (2N, 2N) cosine similarities / T
    self_pairs = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_pairs, float("-inf"))  # an embedding is not its own negative
    positives = torch.cat([torch.arange(n, 2 * n, device=z.device), torch.arange(0, n, device=z.device)])
    return F.cross_entropy(logits, positives)


def byol_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BYOL's regression loss: 2 - 2 cos(p, z'), averaged over the batch. (N, D), (N, D) -> ()."""
    return (2 - 2 * F.cosine_similarity(prediction, target.detach(), dim=-1)).mean()


IGNORE = -100  # target value of positions that carry no loss (BERT: tokens not selected)


def token_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the positions whose target is not IGNORE: GPT's next-token loss
    (every position) and BERT's masked-token loss (selected positions only). (B, T, V), (B, T) -> ()."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE)


def token_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of each position (B, T, V), (B, T) -> (B, T): how well each token is predicted."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="none").view(targets.shape)


def masked_l1(prediction: torch.Tensor, target: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the chosen elements only. prediction, target (B, T, F); chosen (B, T)
    bool picks whole frames (APC: the frames that have a real frame n steps later), (B, T, F) single
    bins (masked speech: the hidden spans, and TERA's hidden band at every frame). -> ()."""
    weights = (chosen[..., None] if chosen.ndim == 2 else chosen).expand_as(prediction).to(prediction.dtype)
    return ((prediction - target).abs() * weights).sum() / weights.sum().clamp_min(1.0)  # 0 when nothing is chosen


def normalised_patches(patches: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Each patch's values standardised by its own mean and variance (B, N, D) -> (B, N, D): MAE's
    and AIM's regression target, which the paper finds gives better features than raw pixels."""
    mean, var = patches.mean(-1, keepdim=True), patches.var(-1, keepdim=True)
    return (patches - mean) / (var + eps).sqrt()


def instance_norm(x: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    """Each channel of each sequence standardised over its real positions: (B, T, C), mask (B, T) -> (B, T, C)."""
    w = torch.ones(x.shape[:2], device=x.device) if mask is None else mask.float()
    w = w[..., None] / w.sum(1).clamp_min(1.0)[:, None, None]  # (B, T, 1): weights of the mean over time
    mean = (x * w).sum(1, keepdim=True)
    var = ((x - mean).pow(2) * w).sum(1, keepdim=True)
    return (x - mean) / (var + eps).sqrt()


def data2vec_targets(layers: list[torch.Tensor], top_k: int, mask: torch.Tensor | None = None,
                     centre_positions: bool = False, norm: str = "instance") -> torch.Tensor:
    """data2vec's regression targets: the average of the top_k layers' outputs (each (B, T, C)), each
    normalised first -> (B, T, C): norm="instance" over time, each channel of each sequence over the real
    positions of mask (B, T) (the paper's speech targets); norm="layer" over the channels of each position,
    without parameters (its text and image targets). centre_positions subtracts each position's mean
    over the batch's real rows there (a per-position batch centring): what the position alone predicts
    is then no part of the target."""
    if norm == "instance":
        normed = [instance_norm(h.float(), mask) for h in layers[-top_k:]]
    else:
        normed = [F.layer_norm(h.float(), h.shape[-1:]) for h in layers[-top_k:]]
    targets = torch.stack(normed).mean(0)
    if not centre_positions:
        return targets
    w = torch.ones(targets.shape[:2], device=targets.device) if mask is None else mask.float()  # (B, T)
    centre = (targets * w[..., None]).sum(0) / w.sum(0).clamp_min(1.0)[:, None]  # (T, C)
    return targets - centre


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, chosen: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error of each position (its vector's mean), averaged over the chosen positions only
    (chosen (B, T) bool: AIM's patches after the prefix, data2vec's masked positions) or over all:
    (B, T, D), (B, T, D) -> ()."""
    per_position = (prediction.float() - target.float()).pow(2).mean(-1)  # (B, T)
    if chosen is None:
        return per_position.mean()
    weights = chosen.to(per_position.dtype)
    return (per_position * weights).sum() / weights.sum().clamp_min(1.0)
