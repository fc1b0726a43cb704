"""Speech: span masking, the 80/10/10 corruption, the L1 losses of masked speech and APC, the padded
batches, folders of recordings (labels, FSDD's split, bad files), and the layer-weighted probe."""

import importlib.util

import numpy as np
import pytest
import soundfile
import torch
from torch import nn

from ssl_zoo.data.base import Waves
from ssl_zoo.data.speech import FSDD, AudioFolder, Utterances
from ssl_zoo.errors import UserError
from ssl_zoo.eval.probe import ProbeConfig, Readout, linear_probe
from ssl_zoo.losses import masked_l1
from ssl_zoo.masking import mask_frames, span_mask
from ssl_zoo.methods.apc import APC
from ssl_zoo.nn.transformer import Transformer


def runs(row: torch.Tensor) -> list[int]:
    """Lengths of the runs of True in a 1-D bool tensor."""
    padded = torch.cat([torch.tensor([False]), row, torch.tensor([False])]).int()
    edges = torch.nonzero(padded.diff()).flatten()
    return (edges[1::2] - edges[::2]).tolist()


def test_span_masking_chooses_15_percent_in_spans_of_7_inside_each_utterance():
    lengths = torch.tensor([1000, 500, 98, 40, 20, 6, 3])
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        chosen = span_mask(lengths, 1000, prob=0.15, span=7, generator=g)
        for row, n in zip(chosen, lengths.tolist()):
            assert not row[n:].any()  # never a padded frame
            total = int(row.sum())
            if n >= 7:  # whole spans: round(0.15 n / 7) of them (at least one), never overlapping
                assert total == 7 * max(1, round(0.15 * n / 7))
                assert all(r % 7 == 0 for r in runs(row))  # adjacent spans may touch, never cut one another
            else:  # shorter than a span: one shorter span, at least a frame
                assert total == max(1, round(0.15 * n)) and len(runs(row)) == 1
        assert abs(chosen[0].float().mean().item() - 0.15) < 0.01
    # The spans move from draw to draw (uniformly placed, not always at the start).
    starts = torch.stack([span_mask(lengths[:1], 1000, 0.15, 7, g)[0].float() for _ in range(200)]).mean(0)
    assert starts[:500].mean().item() == pytest.approx(starts[500:].mean().item(), abs=0.03)


def test_zeroed_replaced_or_kept_is_decided_per_utterance():
    b, t, f = 3000, 40, 4
    lengths = torch.full((b,), t)
    lengths[::2] = 30  # padded utterances too
    mask = torch.arange(t)[None, :] < lengths[:, None]
    # Every real frame is unique: its value tells which utterance and frame it came from.
    feats = (torch.arange(b)[:, None, None] * 1000 + torch.arange(t)[None, :, None] + 1).float().expand(b, t, f) * mask[..., None]
    inputs, chosen = mask_frames(feats, mask, torch.Generator().manual_seed(0), zero_frac=0.8, replace_frac=0.1)
    assert not (inputs[~chosen] != feats[~chosen]).any()  # frames not chosen are untouched
    kinds = []
    for i in range(b):
        got, original = inputs[i][chosen[i]], feats[i][chosen[i]]
        if (got == 0).all():
            kinds.append("zero")
        elif (got == original).all():
            kinds.append("kept")
        else:  # replaced: every chosen frame is now some real frame of the same utterance
            assert ((got // 1000) == i).all() and ((got % 1000) <= lengths[i]).all()
            kinds.append("replaced")
    share = {k: kinds.count(k) / b for k in ("zero", "replaced", "kept")}
    assert share["zero"] == pytest.approx(0.8, abs=0.03)
    assert share["replaced"] == pytest.approx(0.1, abs=0.03) and share["kept"] == pytest.approx(0.1, abs=0.03)


def test_frequency_mask_hides_one_band_of_bins_per_utterance():
    feats, mask = torch.ones(50, 20, 80), torch.ones(50, 20, dtype=torch.bool)
    inputs, _ = mask_frames(feats, mask, torch.Generator().manual_seed(0), zero_frac=0.0, replace_frac=0.0, freq_mask_width=16)
    for row in inputs:
        hidden = (row == 0).all(0)  # (80,) bins hidden at every frame
        assert hidden.sum() <= 16 and len(runs(hidden)) <= 1
    assert (inputs == 0).any()


def test_tera_band_hidden_in_the_input_is_in_the_loss_at_every_real_frame_and_nothing_else_is():
    b, t, f = 40, 30, 80
    lengths = torch.randint(10, t + 1, (b,), generator=torch.Generator().manual_seed(1))
    mask = torch.arange(t)[None, :] < lengths[:, None]
    feats = (torch.rand(b, t, f, generator=torch.Generator().manual_seed(2)) + 1) * mask[..., None]  # real bins never 0
    inputs, masked = mask_frames(feats, mask, torch.Generator().manual_seed(0), prob=0.15, zero_frac=1.0,
                                 replace_frac=0.0, freq_mask_width=16)
    assert masked.shape == (b, t, f)
    real = mask[..., None].expand(b, t, f)
    assert torch.equal(masked & real, (inputs == 0) & real)  # in the loss exactly where the input was hidden
    assert not (masked & ~real).any()  # padding is never reconstructed
    bands = (inputs == 0).all(1)  # (B, F): bins hidden at every frame (padding is 0 as well)
    assert bands.any(1).float().mean() > 0.5  # most utterances lost a band (its width is drawn from 0..16)
    for i in range(b):
        n = int(lengths[i])
        assert masked[i, :n][:, bands[i]].all()  # the band is in the loss on every real frame
        unmasked_bins = ~bands[i]
        frames_in_loss = masked[i, :n][:, unmasked_bins].any(1)  # outside the band: only the chosen spans
        assert torch.equal(frames_in_loss, (inputs[i, :n][:, unmasked_bins] == 0).all(1))
    prediction = torch.zeros(b, t, f, requires_grad=True)
    masked_l1(prediction, feats, masked).backward()
    assert torch.equal(prediction.grad != 0, masked)  # the loss reads the masked bins and only them


def test_masked_l1_counts_the_chosen_frames_only():
    g = torch.Generator().manual_seed(0)
    prediction = torch.randn(2, 5, 3, generator=g, requires_grad=True)
    target = torch.randn(2, 5, 3, generator=g)
    chosen = torch.tensor([[1, 0, 0, 1, 0], [0, 0, 1, 0, 0]], dtype=torch.bool)
    loss = masked_l1(prediction, target, chosen)
    assert loss.item() == pytest.approx((prediction - target)[chosen].abs().mean().item())
    loss.backward()
    assert (prediction.grad[~chosen] == 0).all() and (prediction.grad[chosen] != 0).all()
    assert masked_l1(prediction, target, torch.zeros_like(chosen)).item() == 0.0  # nothing chosen: no loss


class PassThrough(nn.Module):
    """A stand-in encoder whose 'hidden state' at t is the input frame t."""

    def forward(self, x, key_padding_mask=None):
        return x


def test_apc_compares_the_prediction_at_t_with_frame_t_plus_n_and_nothing_past_the_end():
    n, f = 3, 4
    method = APC(Transformer(input_dim=f, block_size=32, n_layer=1, n_head=1, n_embd=8), shift=n)
    method.backbone, method.head = PassThrough(), nn.Identity()  # prediction at t = frame t
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 12, f, generator=g)
    lengths = torch.tensor([12, 7])
    mask = torch.arange(12)[None, :] < lengths[:, None]
    feats = feats * mask[..., None]
    method.log_mel = lambda waves: (feats, mask)
    loss, _ = method.ssl_step(None)
    # Directly: every t with a real frame t + n in its own utterance.
    errors = [(feats[i, t] - feats[i, t + n]).abs() for i, length in enumerate(lengths.tolist()) for t in range(length - n)]
    assert loss.item() == pytest.approx(torch.stack(errors).mean().item(), rel=1e-6)


def test_utterances_batch_into_zero_padded_waves():
    clips = [torch.tensor([1, 2, 3], dtype=torch.int16), torch.tensor([4], dtype=torch.int16), torch.tensor([5, 6], dtype=torch.int16)]
    data = Utterances(torch.cat(clips), torch.tensor([3, 1, 2]), torch.tensor([0, 1, 2]))
    waves, labels = data.__getitems__([1, 2])
    assert isinstance(waves, Waves) and labels.tolist() == [1, 2]
    assert waves.lengths.tolist() == [1, 2] and waves.audio.shape == (2, 2)
    assert (waves.audio * 32768).round().tolist() == [[4, 0], [5, 6]]


def tone(seconds: float, rate: int, hz: float) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * hz * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


def write_fsdd(root, speakers=("ana", "bob"), digits=range(3), takes=7, rate=8_000):
    root.mkdir(parents=True, exist_ok=True)
    for d in digits:
        for s, speaker in enumerate(speakers):
            for i in range(takes):
                soundfile.write(root / f"{d}_{speaker}_{i}.wav", tone(0.3, rate, 200 + 100 * d + 30 * s), rate, subtype="PCM_16")
    return root


def test_fsdd_labels_split_and_resampling(tmp_path):
    root = write_fsdd(tmp_path / "recordings")
    data = FSDD(root=str(root), task="speaker", sample_rate=16_000, max_seconds=1.5)
    data.setup()
    assert data.classes == ["ana", "bob"] and data.num_classes == 2
    splits = data.probe_splits()
    assert len(splits.test) == 3 * 2 * 5 and len(splits.train) == 3 * 2 * 2  # index 0-4 of every (digit, speaker) is test
    waves, labels = splits.test.__getitems__(list(range(len(splits.test))))
    assert (waves.lengths == 4_800).all()  # 0.3 s recorded at 8 kHz, read at 16 kHz
    assert data.encoder_settings() == {"input_dim": 80, "block_size": 148}  # (1.5 s * 16000 - 400) // 160 + 1
    digits = FSDD(root=str(root), task="digit")
    digits.setup()
    assert digits.classes == ["0", "1", "2"]
    with pytest.raises(UserError, match="no task 'index'; set data.task to one of: digit, speaker"):
        FSDD(root=str(root), task="index").setup()


def test_audio_folder_labels_from_sub_folders_or_a_pattern(tmp_path):
    for word in ("yes", "no"):
        (tmp_path / "words" / word).mkdir(parents=True)
        for i in range(10):
            soundfile.write(tmp_path / "words" / word / f"spk{i % 3}_{i}.flac", tone(0.2, 16_000, 300), 16_000)
    folders = AudioFolder(root=str(tmp_path / "words"))
    folders.setup()
    assert folders.task == "folder" and folders.classes == ["no", "yes"]
    by_name = AudioFolder(root=str(tmp_path / "words"), pattern=r"(?P<speaker>spk\d)_", task="speaker")
    by_name.setup()
    assert by_name.classes == ["spk0", "spk1", "spk2"]
    splits = by_name.probe_splits()
    assert len(splits.train) + len(splits.test) == 20 and len(splits.test) > 0
    with pytest.raises(UserError, match=r"data.pattern 'nothing_\(\\d\)' matches none of the 20 files .* \(e.g. 'no/spk0_0.flac'\)"):
        AudioFolder(root=str(tmp_path / "words"), pattern=r"nothing_(\d)").setup()
    flat = tmp_path / "flat"
    flat.mkdir()
    soundfile.write(flat / "a.wav", tone(0.2, 16_000, 300), 16_000)
    soundfile.write(flat / "b.wav", tone(0.2, 16_000, 300), 16_000)
    unlabelled = AudioFolder(root=str(flat))
    unlabelled.setup()
    assert unlabelled.probe_splits() is None and len(unlabelled.pretrain_dataset()) == 2


def test_bad_audio_is_skipped_and_counted_or_refused(tmp_path, capsys):
    root = write_fsdd(tmp_path / "recordings", digits=range(2), takes=6)
    (root / "1_ana_9.wav").write_bytes(b"RIFF\x00\x00not really a wav")  # corrupt
    soundfile.write(root / "1_bob_9.wav", np.zeros(0, np.float32), 8_000)  # zero-length
    soundfile.write(root / "0_bob_9.wav", tone(0.01, 8_000, 300), 8_000)  # 10 ms: shorter than one window
    data = FSDD(root=str(root))
    data.setup()
    out = capsys.readouterr().out
    assert "skipped 2 audio file(s): unreadable or empty" in out and "skipped 1 audio file(s): shorter than one 25 ms window" in out
    assert len(data.all_clips) == 2 * 2 * 6
    with pytest.raises(UserError, match=r"cannot use audio file .*_9.wav \(.*\); remove it, or set data.bad_files=skip"):
        FSDD(root=str(root), bad_files="error").setup()
    with pytest.raises(UserError, match="does not exist; set data.root"):
        FSDD(root=str(tmp_path / "nowhere")).setup()
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no .wav or .flac files"):
        AudioFolder(root=str(tmp_path / "empty")).setup()


def test_without_espeak_the_embedded_words_say_how_to_install_it_and_folders_still_work(tmp_path, monkeypatch):
    from ssl_zoo.data.speech import SpokenWords

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "espeakng_loader" else real(name, *a))
    with pytest.raises(UserError, match="pip install espeakng-loader .*data=fsdd or data=audio_folder work without it"):
        SpokenWords(cache_dir=str(tmp_path / "cache")).setup()
    data = FSDD(root=str(write_fsdd(tmp_path / "recordings")))
    data.setup()
    assert len(data.all_clips) == 42


def test_a_learned_layer_mix_finds_the_informative_layer():
    g = torch.Generator().manual_seed(0)
    n, layers, d = 600, 4, 16
    labels = torch.randint(0, 3, (n,), generator=g)
    x = torch.randn(n, layers, d, generator=g)
    x[:, 2, :3] += 5.0 * nn.functional.one_hot(labels, 3)  # only layer 2 knows the label
    cfg = ProbeConfig(steps=200, lrs=[0.1], weight_decays=[0.0])
    acc, chosen, readout = linear_probe(x[:400], labels[:400], x[400:], labels[400:], 3, cfg)
    assert acc > 0.95 and isinstance(readout, Readout)
    weights = chosen["layer_weights"]
    assert len(weights) == layers and max(weights) == weights[2] and sum(weights) == pytest.approx(1.0, abs=1e-3)


def test_clips_shorter_than_a_mask_span_are_named_in_one_line():
    from ssl_zoo.methods.speech import short_clip_note

    assert short_clip_note(torch.tensor([98, 20, 7]), span=7, hop_seconds=0.01) is None
    note = short_clip_note(torch.tensor([98, 6, 3]), span=7, hop_seconds=0.01)
    assert note == "2 of 3 clips are shorter than a 7-frame mask span (70 ms): each gets one shorter span instead"
