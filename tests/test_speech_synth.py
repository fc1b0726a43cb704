"""The embedded speech source: eSpeak NG through ctypes; a corpus synthesised twice is the same, bit for bit."""

import csv
import io

import numpy as np
import pytest
import soundfile
import torch

from ssl_zoo.data.speech_synth import MANIFEST, Voice, build_spoken_words, make_voices, speak
from ssl_zoo.errors import UserError


def test_a_corpus_is_deterministic_audible_and_at_the_asked_rate(tmp_path):
    words = ["zero", "seven"]
    first = build_spoken_words(tmp_path / "a", words, num_voices=2, takes=2, seed=3)
    again = build_spoken_words(tmp_path / "b", words, num_voices=2, takes=2, seed=3)
    rows = list(csv.DictReader(open(first)))
    assert len(rows) == 2 * 2 * 2 and {r["word"] for r in rows} == set(words)
    assert len({r["voice"] for r in rows}) == 2
    assert first.read_text() == again.read_text()
    for row in rows:
        a, rate = soundfile.read(first.parent / row["path"], dtype="float32")
        b, _ = soundfile.read(again.parent / row["path"], dtype="float32")
        assert rate == 16_000 and np.array_equal(a, b)  # the same settings: the same samples
        assert 0.2 * rate < len(a) < 2.0 * rate and np.sqrt(np.mean(a**2)) > 0.02  # a word, not silence
    takes = [soundfile.read(first.parent / r["path"])[0] for r in rows if r["word"] == "zero" and r["voice"].startswith("00")]
    assert len(takes[0]) != len(takes[1]) or not np.array_equal(takes[0], takes[1])  # takes differ
    other = build_spoken_words(tmp_path / "c", words, num_voices=2, takes=2, seed=4)
    assert other.read_text() != first.read_text()  # another seed, other voices
    assert build_spoken_words(tmp_path / "a", words, num_voices=2, takes=2, seed=3) == first  # cached: not redone
    assert not list(tmp_path.glob(".*.tmp"))  # nothing half-written left behind


def test_voices_are_distinct_and_drawn_by_seed():
    voices = make_voices(20, seed=0)
    assert len({v.name for v in voices}) == 20 and voices == make_voices(20, seed=0)
    assert voices != make_voices(20, seed=1)
    with pytest.raises(UserError, match="at most 60 voices"):
        make_voices(61)


def test_speak_resamples_and_keeps_the_peak_at_the_voice_gain():
    voice = Voice("en+m3", pitch=40, rate=150, gain=0.5)
    audio = speak("one", voice, take=0, sample_rate=16_000, snr_db=(60, 60))
    assert audio.dtype == torch.float32 and audio.ndim == 1
    assert audio.abs().max().item() == pytest.approx(0.5, abs=0.01)
    low = speak("one", voice, take=0, sample_rate=8_000, snr_db=(60, 60))
    assert 0.3 < len(low) / len(audio) < 0.7
    buffer = io.BytesIO()
    soundfile.write(buffer, audio.numpy(), 16_000, format="WAV", subtype="PCM_16")
    buffer.seek(0)
    read, rate = soundfile.read(buffer, dtype="float32")
    assert rate == 16_000 and np.abs(read - audio.numpy()).max() < 1e-4
