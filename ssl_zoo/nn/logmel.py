"""The speech front end: batched log-mel frames of padded waveforms, computed on the batch's device.

`LogMelSettings` is how audio is cut into frames, as plain numbers: a speech datamodule reads it to
refuse clips shorter than one window and to tell the encoder how many frames a clip can have, without
building the filterbank; `LogMel` is the module a speech method runs.
"""

import warnings
from dataclasses import dataclass
from typing import Annotated

import torch
import torchaudio
from torch import nn

from ssl_zoo.errors import BadValue, UserError
from ssl_zoo.settings import OneOf, Range

NORMALISE = ("utterance", "bins", "none")


@dataclass(frozen=True)
class LogMelSettings:
    """80 mel bins over 25 ms windows every 10 ms by default. Normalisation per utterance, over its own
    real frames: `utterance` subtracts the clip's mean log energy and divides by its spread (loudness
    goes, the spectral envelope that tells voices apart stays); `bins` does so per mel bin (CMVN: also
    removes the clip's average spectrum); `none` keeps the raw log-mel."""

    sample_rate: Annotated[int, Range(1, whole=True)] = 16_000
    n_mels: Annotated[int, Range(1, whole=True)] = 80
    win_ms: Annotated[float, Range(0, above=True)] = 25.0
    hop_ms: Annotated[float, Range(0, above=True)] = 10.0
    normalise: Annotated[str, OneOf(NORMALISE)] = "utterance"

    def __post_init__(self):
        if self.normalise not in NORMALISE:
            raise UserError(f"unknown normalise '{self.normalise}' in data.features; choose one of: {', '.join(NORMALISE)}")
        if not 0 < self.hop <= self.win:
            raise BadValue("data.features.hop_ms", f"data.features.hop_ms={self.hop_ms} gives frames {self.hop} samples apart "
                           f"with windows of {self.win} (data.features.win_ms={self.win_ms} at {self.sample_rate} Hz); "
                           "give a hop of at least one sample and at most the window, e.g. hop_ms=10 with win_ms=25")
        if self.empty_filters(self.n_mels):  # each mel filter needs a frequency bin of the window's spectrum
            fits = next((n for n in range(self.n_mels, 0, -1) if not self.empty_filters(n)), 0)
            raise BadValue("data.features.n_mels", f"data.features.n_mels={self.n_mels} leaves {self.empty_filters(self.n_mels)} "
                           f"mel filter(s) with no frequency of a {self.win_ms} ms window at {self.sample_rate} Hz in them; "
                           + (f"give data.features.n_mels={fits} or fewer, or " if fits else "")
                           + "widen data.features.win_ms / raise data.sample_rate")

    def empty_filters(self, n_mels: int) -> int:
        """How many of n_mels mel filters catch no frequency bin of this window's spectrum (all-zero rows)."""
        if self.win < 2:
            return n_mels
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchaudio's own warning about this very case
            bank = torchaudio.functional.melscale_fbanks(self.win // 2 + 1, 0.0, self.sample_rate / 2, n_mels, self.sample_rate)
        return int((bank.max(dim=0).values == 0).sum())

    @property
    def win(self) -> int:
        """Samples in one analysis window."""
        return int(self.sample_rate * self.win_ms / 1000)

    @property
    def hop(self) -> int:
        """Samples from one frame to the next."""
        return int(self.sample_rate * self.hop_ms / 1000)

    def frames(self, lengths: torch.Tensor) -> torch.Tensor:
        """Number of whole windows in utterances of `lengths` samples."""
        return ((lengths - self.win) // self.hop + 1).clamp_min(0)


def logmel_settings(sample_rate: int, features: dict) -> LogMelSettings:
    """The settings of data.features (n_mels, win_ms, hop_ms, normalise) at sample_rate; an unknown key is refused."""
    unknown = sorted(set(features) - {"n_mels", "win_ms", "hop_ms", "normalise"})
    if unknown:
        raise UserError(f"unknown setting(s) {', '.join(unknown)} in data.features; the settings are n_mels, win_ms, hop_ms, normalise")
    return LogMelSettings(sample_rate, **features)


class LogMel(nn.Module):
    """(waves (B, S) padded, lengths (B,) in samples) -> (features (B, T, n_mels), mask (B, T), True = real).

    The real frames of the whole batch are transformed in one call (torchaudio's window and mel
    filterbank), so padding costs nothing and the result equals MelSpectrogram on each clip alone;
    padded frames are zero. Settings: see LogMelSettings.
    """

    def __init__(self, sample_rate: int = 16_000, **features):
        super().__init__()
        self.settings = s = logmel_settings(sample_rate, features)
        self.sample_rate, self.n_mels, self.win, self.hop = s.sample_rate, s.n_mels, s.win, s.hop
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=s.sample_rate, n_fft=s.win, win_length=s.win, hop_length=s.hop, n_mels=s.n_mels,
            center=False,  # frame t covers samples [t * hop, t * hop + win): padding never leaks into real frames
        )

    def frames(self, lengths: torch.Tensor) -> torch.Tensor:
        """Number of whole windows in each utterance."""
        return self.settings.frames(lengths)

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frames = waves.float().unfold(1, self.win, self.hop)  # (B, T, win): a view, no copy
        mask = torch.arange(frames.shape[1], device=waves.device)[None, :] < self.frames(lengths)[:, None]  # (B, T)
        with torch.autocast(waves.device.type, enabled=False):  # the FFT and the log in float32, also under bf16
            # Only the real frames of the whole batch go through one FFT: padding costs no work. Window,
            # power spectrum and mel filterbank are torchaudio's MelSpectrogram's own (center=False).
            real = frames[mask] * self.mel.spectrogram.window  # (N_real, win)
            power = torch.fft.rfft(real, n=self.mel.spectrogram.n_fft).abs().pow(2)  # (N_real, n_fft // 2 + 1)
            mels = (power @ self.mel.mel_scale.fb + 1e-6).log()  # (N_real, n_mels)
        feats = mels.new_zeros(*mask.shape, self.n_mels).masked_scatter(mask[..., None], mels)  # (B, T, n_mels)
        weights = mask[..., None].to(feats.dtype)  # (B, T, 1)
        normalise = self.settings.normalise
        if normalise != "none":
            dims = (1, 2) if normalise == "utterance" else (1,)
            count = weights.sum(dims, keepdim=True).clamp_min(1.0) * (feats.shape[2] if normalise == "utterance" else 1)
            mean = (feats * weights).sum(dims, keepdim=True) / count
            var = ((feats - mean) ** 2 * weights).sum(dims, keepdim=True) / count
            feats = (feats - mean) / (var.sqrt() + 1e-5)
        return feats * weights, mask
