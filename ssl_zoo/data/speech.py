"""Speech features: log-mel frames of a padded batch of waveforms, computed in one batched call (on the
GPU when the batch is there), with a mask of the real frames and per-utterance normalisation."""

import torch
import torchaudio
from torch import nn


class LogMel(nn.Module):
    """(waves (B, S) padded, lengths (B,) in samples) -> (features (B, T, n_mels), mask (B, T), True = real).

    80 mel bins over 25 ms windows every 10 ms by default. Each utterance is normalised to zero mean and
    unit variance per bin over its own real frames (Mockingjay/TERA's input); padded frames are zero.
    """

    def __init__(self, sample_rate: int = 16_000, n_mels: int = 80, win_ms: float = 25.0, hop_ms: float = 10.0,
                 normalise: bool = True):
        super().__init__()
        self.win = int(sample_rate * win_ms / 1000)
        self.hop = int(sample_rate * hop_ms / 1000)
        self.normalise = normalise
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=self.win, win_length=self.win, hop_length=self.hop, n_mels=n_mels,
            center=False,  # frame t covers samples [t * hop, t * hop + win): padding never leaks into real frames
        )

    def frames(self, lengths: torch.Tensor) -> torch.Tensor:
        """Number of whole windows in each utterance."""
        return ((lengths - self.win) // self.hop + 1).clamp_min(0)

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = (self.mel(waves.float()) + 1e-6).log().transpose(1, 2)  # (B, T, n_mels)
        mask = torch.arange(feats.shape[1], device=waves.device)[None, :] < self.frames(lengths)[:, None]  # (B, T)
        weights = mask[..., None].to(feats.dtype)
        if self.normalise:
            count = weights.sum(1, keepdim=True).clamp_min(1.0)
            mean = (feats * weights).sum(1, keepdim=True) / count
            var = ((feats - mean) ** 2 * weights).sum(1, keepdim=True) / count
            feats = (feats - mean) / (var.sqrt() + 1e-5)
        return feats * weights, mask
