"""What the speech methods share: log-mel features computed on the device from the batch of
waveforms, the shared transformer reading them with the attention the method needs, and the probe's
features (mean-pooled frames of one layer, or of every layer for a learned weighted sum), with the
log-mel input itself as a baseline."""

import torch
from torch import nn

from ssl_zoo.data.base import DataInfo, Waves
from ssl_zoo.methods.base import SSLMethod
from ssl_zoo.nn.logmel import LogMel
from ssl_zoo.nn.transformer import Transformer, mean_pool


class SpeechMethod(SSLMethod):
    modality = "speech"
    causal: bool  # the attention the method trains with

    def __init__(self, backbone: Transformer, sample_rate: int = 16_000, features: dict | None = None,
                 probe_layer: int | str = -1, **base):
        super().__init__(backbone, **base)
        backbone.use_attention(self.causal, f"method={self.name}")
        self.probe_layer = backbone.check_layer(probe_layer, "method.probe_layer")
        self.frontend = LogMel(sample_rate, **(features or {}))

    def use_data(self, info: DataInfo) -> None:
        super().use_data(info)
        if getattr(self, "span", None) and info.clip_lengths is not None:  # a method that masks spans of frames
            frames, hop_seconds = self.frontend.frames(info.clip_lengths), self.frontend.hop / self.frontend.sample_rate
            if note := short_clip_note(frames, self.span, hop_seconds):
                print(note)

    def log_mel(self, waves: Waves) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, n_mels) normalised log-mel frames and (B, T) mask of the real ones."""
        return self.frontend(waves.audio, waves.lengths)

    def prediction_head(self, hidden_layers: int) -> nn.Module:
        """Hidden states (.., C) -> frames (.., n_mels): a linear layer, or Mockingjay's
        Linear-GELU-LayerNorm block before it."""
        c, f = self.backbone.out_dim, self.frontend.n_mels
        if hidden_layers == 0:
            return nn.Linear(c, f)
        return nn.Sequential(nn.Linear(c, c), nn.GELU(), nn.LayerNorm(c), nn.Linear(c, f))

    def embed(self, waves: Waves) -> torch.Tensor:
        feats, mask = self.log_mel(waves)
        return self.backbone.pooled(feats, mask, self.probe_layer)

    def baseline_embeddings(self) -> dict:
        """SUPERB's FBANK row: the mean-pooled log-mel frames, exactly as the encoder reads them."""
        return {"logmel": lambda waves: mean_pool(*self.log_mel(waves))}


def short_clip_note(frames, span: int, hop_seconds: float) -> str | None:
    """One line about clips shorter than a mask span (span_mask gives each one shorter span)."""
    short = int((frames < span).sum())
    if not short:
        return None
    return (f"{short} of {len(frames)} clips are shorter than a {span}-frame mask span ({1000 * hop_seconds * span:.0f} ms): "
            "each gets one shorter span instead")
