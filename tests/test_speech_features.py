"""Log-mel features of a padded batch: shapes, masks of variable lengths, per-utterance normalisation."""

import pytest
import torch
import torchaudio

from ssl_zoo.nn.logmel import LogMel


def test_log_mel_of_a_padded_batch_matches_each_utterance_alone():
    g = torch.Generator().manual_seed(0)
    lengths = torch.tensor([16_000, 7_000, 400])  # 1 s, 0.44 s, one window
    waves = torch.zeros(3, 16_000)
    for i, n in enumerate(lengths):
        waves[i, :n] = torch.randn(n, generator=g)
    features = LogMel(normalise="none")
    feats, mask = features(waves, lengths)
    assert feats.shape == (3, 98, 80) and mask.shape == (3, 98)  # (16000 - 400) // 160 + 1 windows
    assert mask.sum(1).tolist() == [98, 42, 1]  # (7000 - 400) // 160 + 1 = 42
    assert (feats[~mask] == 0).all()  # padded frames carry nothing
    alone = torchaudio.transforms.MelSpectrogram(16_000, n_fft=400, win_length=400, hop_length=160, n_mels=80, center=False)
    for i, n in enumerate(lengths.tolist()):  # padding never changes the real frames
        expected = (alone(waves[i, :n]) + 1e-6).log().T
        assert torch.allclose(feats[i, : mask[i].sum()], expected, atol=1e-4)


def test_each_utterance_is_normalised_over_its_own_real_frames():
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([12_000, 5_000])
    waves = torch.zeros(2, 12_000)
    waves[0] = 0.5 * torch.randn(12_000, generator=g)
    waves[1, :5_000] = 0.01 * torch.randn(5_000, generator=g)  # much quieter
    raw, mask = LogMel(normalise="none")(waves, lengths)
    per_bin, _ = LogMel(normalise="bins")(waves, lengths)
    whole, _ = LogMel(normalise="utterance")(waves, lengths)
    for i in range(2):
        real = per_bin[i, mask[i]]  # (frames, 80): every bin zero-mean, unit-variance
        assert real.mean(0).abs().max() < 1e-4
        assert real.std(0, unbiased=False).mean().item() == pytest.approx(1.0, abs=1e-3)
        real = whole[i, mask[i]]  # one mean and spread for the whole clip: the spectral shape stays
        assert real.mean().abs() < 1e-4 and real.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-3)
        original = raw[i, mask[i]]
        assert torch.allclose(real, (original - original.mean()) / original.std(unbiased=False), atol=1e-3)
    assert (per_bin[1, ~mask[1]] == 0).all() and (whole[1, ~mask[1]] == 0).all()
    quiet_then_loud = torch.stack([waves[0], 10 * waves[0]])  # loudness is gone after normalisation
    feats, _ = LogMel()(quiet_then_loud, torch.tensor([12_000, 12_000]))
    assert torch.allclose(feats[0], feats[1], atol=1e-3)
