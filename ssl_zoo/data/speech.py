"""Speech data: clips of audio as padded batches of waveforms, log-mel features computed on the batch
(on the GPU when the batch is there), and the span masking of masked speech prediction.

- `spoken_words` (embedded): words spoken by many synthetic voices (eSpeak NG, see speech_synth.py),
  synthesised once into a cache folder; probe tasks `voice` (speaker identification) and `word`
  (keyword spotting); the last takes of every (word, voice) are the probe's test set.
- `audio_folder`: any folder of WAV/FLAC files, labels from sub-folders or from a file-name pattern;
  `fsdd`, `speech_commands` and `librispeech` are its ready layouts.

A batch is (Waves(audio (B, S) float32, lengths (B,)), labels (B,)): every clip is resampled to
`sample_rate` when read and cut to `max_seconds`, so the encoder sees at most `max_frames` frames.
"""

import csv
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torchaudio
from torch import nn
from torch.utils.data import Dataset

from ssl_zoo.data.base import ProbeSplits, SSLDataModule
from ssl_zoo.errors import UserError

AUDIO_SUFFIXES = {".wav", ".flac"}


class Waves(NamedTuple):
    """A zero-padded batch of waveforms: audio (B, S) in [-1, 1], lengths (B,) in samples."""

    audio: torch.Tensor
    lengths: torch.Tensor

    def to(self, device, non_blocking: bool = False) -> "Waves":
        return Waves(self.audio.to(device, non_blocking=non_blocking), self.lengths.to(device, non_blocking=non_blocking))


# --- features -----------------------------------------------------------------------------------
class LogMel(nn.Module):
    """(waves (B, S) padded, lengths (B,) in samples) -> (features (B, T, n_mels), mask (B, T), True = real).

    The real frames of the whole batch are transformed in one call (torchaudio's window and mel
    filterbank), so padding costs nothing and the result equals MelSpectrogram on each clip alone.

    80 mel bins over 25 ms windows every 10 ms by default; padded frames are zero. Normalisation per
    utterance, over its own real frames: `utterance` subtracts the clip's mean log energy and divides
    by its spread (loudness goes, the spectral envelope that tells voices apart stays); `bins` does
    so per mel bin (CMVN: also removes the clip's average spectrum); `none` keeps the raw log-mel.
    """

    NORMALISE = ("utterance", "bins", "none")

    def __init__(self, sample_rate: int = 16_000, n_mels: int = 80, win_ms: float = 25.0, hop_ms: float = 10.0,
                 normalise: str = "utterance"):
        super().__init__()
        if normalise not in self.NORMALISE:
            raise UserError(f"unknown normalise '{normalise}' in data.features; choose one of: {', '.join(self.NORMALISE)}")
        self.sample_rate, self.n_mels, self.normalise = sample_rate, n_mels, normalise
        self.win = int(sample_rate * win_ms / 1000)
        self.hop = int(sample_rate * hop_ms / 1000)
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=self.win, win_length=self.win, hop_length=self.hop, n_mels=n_mels,
            center=False,  # frame t covers samples [t * hop, t * hop + win): padding never leaks into real frames
        )

    def frames(self, lengths: torch.Tensor) -> torch.Tensor:
        """Number of whole windows in each utterance."""
        return ((lengths - self.win) // self.hop + 1).clamp_min(0)

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
        if self.normalise != "none":
            dims = (1, 2) if self.normalise == "utterance" else (1,)
            count = weights.sum(dims, keepdim=True).clamp_min(1.0) * (feats.shape[2] if self.normalise == "utterance" else 1)
            mean = (feats * weights).sum(dims, keepdim=True) / count
            var = ((feats - mean) ** 2 * weights).sum(dims, keepdim=True) / count
            feats = (feats - mean) / (var.sqrt() + 1e-5)
        return feats * weights, mask


# --- masked speech prediction's corruption --------------------------------------------------------
def span_mask(lengths: torch.Tensor, max_len: int, prob: float, span: int, generator: torch.Generator) -> torch.Tensor:
    """Choose about `prob` of each utterance's real frames in non-overlapping spans of `span` frames.

    lengths: (B,) real frames. Returns chosen (B, max_len) bool. An utterance of n frames gets
    round(prob * n / span) spans (at least one, so a short word is never left unmasked) placed
    uniformly at random: the frames left free are shared out over the gaps between spans. A clip
    shorter than one span gets a single span of round(prob * n) frames (at least one).
    """
    device = lengths.device
    short = lengths < span
    span_len = torch.where(short, (prob * lengths).round().long().clamp_min(1), span)  # (B,)
    count = torch.where(short, 1, (prob * lengths / span).round().long().clamp_min(1))  # (B,) spans per utterance
    free = (lengths - count * span_len).clamp_min(0)  # (B,) frames outside the spans
    slots = torch.arange(int(count.max()), device=device)  # (K,)
    used = slots[None, :] < count[:, None]  # (B, K)
    # Stars and bars: K sorted gap offsets in [0, free] put K spans in order without overlap.
    offsets = (torch.rand(used.shape, generator=generator, device=device) * (free[:, None] + 1)).floor().long()
    offsets = offsets.masked_fill(~used, torch.iinfo(torch.long).max).sort(dim=1).values.masked_fill(~used, 0)
    starts = offsets + slots[None, :] * span_len[:, None]  # (B, K)
    edges = torch.zeros(len(lengths), max_len + 1, device=device)
    edges.scatter_add_(1, starts.clamp(max=max_len), used.float())
    edges.scatter_add_(1, (starts + span_len[:, None]).clamp(max=max_len), -used.float())
    return edges.cumsum(1)[:, :max_len] > 0


def mask_frames(feats: torch.Tensor, mask: torch.Tensor, generator: torch.Generator, prob: float = 0.15, span: int = 7,
                zero_frac: float = 0.8, replace_frac: float = 0.1, freq_mask_width: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Mockingjay / TERA's corruption of log-mel frames (B, T, F) with real-frame mask (B, T).

    Spans of frames are chosen (see span_mask); then, decided once per utterance, the chosen frames are
    zeroed (zero_frac of utterances), replaced by randomly drawn real frames of the same utterance
    (replace_frac) or kept as they are (the rest). With freq_mask_width > 0 (TERA), each utterance also
    loses a band of 0..freq_mask_width consecutive mel bins at every frame. Returns (inputs, chosen).
    """
    b, t, f = feats.shape
    lengths = mask.sum(1)
    chosen = span_mask(lengths, t, prob, span, generator)
    action = torch.rand(b, 1, 1, generator=generator, device=feats.device)  # (B, 1, 1): one decision per utterance
    source = (torch.rand(b, t, generator=generator, device=feats.device) * lengths[:, None]).long()  # (B, T) real frames
    replaced = feats.gather(1, source[..., None].expand(-1, -1, f))
    corrupted = torch.where(action < zero_frac, torch.zeros_like(feats),
                            torch.where(action < zero_frac + replace_frac, replaced, feats))
    inputs = torch.where(chosen[..., None], corrupted, feats)
    if freq_mask_width > 0:
        width = torch.randint(0, freq_mask_width + 1, (b, 1), generator=generator, device=feats.device)
        low = (torch.rand(b, 1, generator=generator, device=feats.device) * (f - width + 1)).long()
        bins = torch.arange(f, device=feats.device)[None, :]
        band = (bins >= low) & (bins < low + width)  # (B, F)
        inputs = inputs.masked_fill(band[:, None, :], 0.0)
    return inputs, chosen


# --- clips in memory ------------------------------------------------------------------------------
class Utterances(Dataset):
    """Clips stored end to end in one int16 tensor; a batch is one gather into a zero-padded
    (B, longest) float32 tensor, so batches carry no more padding than their longest clip needs."""

    def __init__(self, samples: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor):
        self.samples, self.lengths, self.labels = samples, lengths, labels
        self.offsets = torch.cumsum(lengths, 0) - lengths

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitems__(self, indices: list[int]):
        idx = torch.as_tensor(indices, dtype=torch.long)
        lengths = self.lengths[idx]
        positions = torch.arange(int(lengths.max()))
        real = positions[None, :] < lengths[:, None]  # (B, S)
        where = (self.offsets[idx, None] + positions[None, :]).clamp(max=len(self.samples) - 1)
        audio = self.samples[where].float().div_(32768.0) * real
        return Waves(audio, lengths), self.labels[idx]

    def __getitem__(self, i: int):
        waves, labels = self.__getitems__([i])
        return Waves(waves.audio[0], waves.lengths[0]), labels[0]


@dataclass
class Clip:
    path: Path
    labels: dict[str, str] = field(default_factory=dict)  # task -> label, e.g. {"digit": "7", "speaker": "jackson"}
    test: bool = False  # in the probe's test set


def read_audio(path: Path, sample_rate: int) -> torch.Tensor:
    """A WAV/FLAC file as float32 mono at sample_rate (resampled if it was recorded at another rate)."""
    import soundfile

    audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)  # (samples, channels)
    audio = torch.from_numpy(audio.mean(1))
    return audio if rate == sample_rate else torchaudio.functional.resample(audio, rate, sample_rate)


def stable_fraction(text: str) -> float:
    """A number in [0, 1) fixed by the text: a split that does not move when files are added."""
    return zlib.crc32(text.encode()) / 2**32


class SpeechDataModule(SSLDataModule):
    """What every speech dataset shares: reading its clips (skipping or refusing unreadable ones),
    labels of the chosen task, the probe's train/test clips and the encoder's input size."""

    modality = "speech"
    name = "speech"
    tasks: tuple[str, ...] = ()
    bound_to_encoder = ("sample_rate", "max_seconds", "features")

    def __init__(self, task: str | None = None, sample_rate: int = 16_000, max_seconds: float = 1.0,
                 features: dict | None = None, bad_files: str = "skip", **base):
        super().__init__(**base)
        if bad_files not in ("skip", "error"):
            raise UserError(f"data.bad_files must be skip or error, got '{bad_files}'")
        self.task, self.sample_rate, self.max_seconds, self.bad_files = task, sample_rate, max_seconds, bad_files
        self.features = dict(features or {})
        self.frontend = LogMel(sample_rate, **self.features)  # only to count frames; the method computes features
        if self.max_samples < self.frontend.win:
            raise UserError(f"data.max_seconds={max_seconds} is shorter than one analysis window "
                            f"({self.frontend.win / sample_rate:g} s); set it to the longest clip length to keep, e.g. 1.0")

    # --- what a dataset defines ------------------------------------------------------------------
    def clips(self) -> list[Clip]:
        raise NotImplementedError

    # --- preparation -----------------------------------------------------------------------------
    @property
    def max_samples(self) -> int:
        return int(self.max_seconds * self.sample_rate)

    def max_frames(self) -> int:
        return int(self.frontend.frames(torch.tensor(self.max_samples)))

    def encoder_settings(self) -> dict:
        return {"input_dim": self.frontend.n_mels, "block_size": self.max_frames()}

    def prepare(self) -> None:
        clips = self.clips()
        tasks = list(self.tasks) or sorted({t for c in clips for t in c.labels})
        if self.task is None and tasks:
            self.task = tasks[0]
        if tasks and self.task not in tasks:
            raise UserError(f"data '{self.name}' has no task '{self.task}'; set data.task to one of: {', '.join(tasks)}")
        audio, kept, problems, resampled = [], [], {}, set()
        for clip in clips:
            try:
                wave = read_audio(clip.path, self.sample_rate)[: self.max_samples]
                if len(wave) < self.frontend.win:
                    raise ValueError(f"shorter than one {1000 * self.frontend.win / self.sample_rate:g} ms window")
            except Exception as e:  # soundfile's errors for corrupt files, or too short
                reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                if self.bad_files == "error":
                    raise UserError(f"cannot use audio file {clip.path} ({reason}); remove it, or set data.bad_files=skip") from None
                problems.setdefault(reason if "shorter" in reason else "unreadable or empty", []).append(clip.path)
                continue
            audio.append((wave.clamp(-1, 1) * 32767).round().to(torch.int16))
            kept.append(clip)
        for reason, paths in problems.items():
            print(f"skipped {len(paths)} audio file(s): {reason} (first: {paths[0]}); data.bad_files=error refuses them")
        if not kept:
            raise UserError(f"no usable audio in data '{self.name}' ({len(clips)} file(s) found, none readable)")
        self.classes = sorted({c.labels[self.task] for c in kept if self.task in c.labels}, key=natural_key)
        index = {label: i for i, label in enumerate(self.classes)}
        labels = torch.tensor([index.get(c.labels.get(self.task), -1) for c in kept])
        lengths = torch.tensor([len(a) for a in audio])
        self.num_classes = len(self.classes)
        test = torch.tensor([c.test for c in kept])
        samples = torch.cat(audio)
        self.all_clips = Utterances(samples, lengths, labels)
        self.train_index = torch.nonzero(~test).flatten().tolist()
        self.test_index = torch.nonzero(test).flatten().tolist()
        hours = lengths.sum().item() / self.sample_rate / 3600
        print(f"{self.name}: {len(kept)} clips ({hours:.2f} h at {self.sample_rate} Hz), task '{self.task}' "
              f"with {self.num_classes} classes, {len(self.test_index)} test clips")

    def pretrain_dataset(self) -> Dataset:
        return torch.utils.data.Subset(self.all_clips, self.train_index) if self.test_index else self.all_clips

    def probe_splits(self) -> ProbeSplits | None:
        self.setup()
        if self.num_classes < 2:
            return None
        labelled = self.all_clips.labels >= 0
        train = [i for i in self.train_index if labelled[i]]
        test = [i for i in self.test_index if labelled[i]]
        if not train or not test:
            raise UserError(f"data '{self.name}' has no {'test' if train else 'train'} clips for the probe; "
                            "check its split settings (data.test_fraction)")
        subset = torch.utils.data.Subset
        return ProbeSplits(subset(self.all_clips, train), subset(self.all_clips, test), self.num_classes, self.task)


def natural_key(label: str):
    """'2' before '10': numbers in labels sort as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", label)]


# --- the datasets ---------------------------------------------------------------------------------
DIGIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


class SpokenWords(SpeechDataModule):
    """Embedded: `words` spoken by `num_voices` synthetic voices, `takes` times each, synthesised on
    first use into <cache>/speech/spoken_words-<digest>/ (WAV files + manifest.csv). Probe tasks:
    `voice` and `word`; the last `test_takes` takes of every (word, voice) are the test set."""

    name = "spoken_words"
    tasks = ("voice", "word")

    def __init__(self, words: list[str] = DIGIT_WORDS, num_voices: int = 20, takes: int = 8, test_takes: int = 2,
                 cache_dir: str | None = None, **kwargs):
        super().__init__(**kwargs)
        if not 0 < test_takes < takes:
            raise UserError(f"data.test_takes must be between 1 and data.takes - 1 ({takes - 1}), got {test_takes}")
        self.words, self.num_voices, self.takes, self.test_takes = list(words), num_voices, takes, test_takes
        self.cache_dir = cache_dir

    def clips(self) -> list[Clip]:
        from ssl_zoo.data.speech_synth import SYNTH_VERSION, build_spoken_words, make_voices
        from ssl_zoo.data.text import cache_root, digest

        make_voices(self.num_voices, self.seed)  # refuses too many voices before any work
        key = digest("spoken_words", SYNTH_VERSION, self.words, self.num_voices, self.takes, self.seed, self.sample_rate)
        root = cache_root(self.cache_dir) / "speech" / f"spoken_words-{key}"
        if not (root / "manifest.csv").is_file():
            print(f"synthesising {len(self.words) * self.num_voices * self.takes} spoken words once into {root} ...")
        manifest = build_spoken_words(root, self.words, self.num_voices, self.takes, self.seed, self.sample_rate)
        with open(manifest, newline="") as f:
            rows = list(csv.DictReader(f))
        return [Clip(root / r["path"], {"word": r["word"], "voice": r["voice"]}, int(r["take"]) >= self.takes - self.test_takes)
                for r in rows]


class AudioFolder(SpeechDataModule):
    """Any folder of WAV/FLAC files (searched recursively). Labels come from `pattern`, a regular
    expression matched against each file's path relative to the folder whose named groups are the
    tasks (e.g. `(?P<digit>\\d)_(?P<speaker>[a-z]+)_(?P<index>\\d+)\\.wav`), or else from the first
    sub-folder (task `folder`); a flat folder without a pattern is unlabelled (pretraining only).
    The probe's test set is `test_fraction` of the files, chosen by a hash of their names."""

    name = "audio_folder"

    def __init__(self, root: str, pattern: str | None = None, test_fraction: float = 0.2, **kwargs):
        super().__init__(**kwargs)
        self.path, self.test_fraction = Path(root).expanduser(), test_fraction
        try:
            self.pattern = re.compile(pattern) if pattern else None
        except re.error as e:
            raise UserError(f"data.pattern '{pattern}' is not a regular expression ({e})") from None

    def files(self) -> list[Path]:
        if not self.path.is_dir():
            raise UserError(f"audio folder {self.path} does not exist; set data.root to a folder of WAV/FLAC files")
        files = sorted(p for p in self.path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        if not files:
            raise UserError(f"audio folder {self.path} holds no .wav or .flac files; set data.root to a folder of recordings")
        return files

    def labels_of(self, relative: Path) -> dict[str, str] | None:
        """The file's labels, or None when the pattern does not match its name."""
        if self.pattern is not None:
            found = self.pattern.search(relative.as_posix())
            return {k: v for k, v in found.groupdict().items() if v is not None} if found else None
        return {"folder": relative.parts[0]} if len(relative.parts) > 1 else {}

    def is_test(self, relative: Path, labels: dict[str, str]) -> bool:
        return stable_fraction(relative.as_posix()) < self.test_fraction

    def clips(self) -> list[Clip]:
        clips, unmatched = [], []
        files = self.files()
        for path in files:
            relative = path.relative_to(self.path)
            labels = self.labels_of(relative)
            if labels is None:
                unmatched.append(relative)
                continue
            clips.append(Clip(path, labels, self.is_test(relative, labels)))
        if not clips:
            raise UserError(f"data.pattern '{self.pattern.pattern}' matches none of the {len(files)} files in "
                            f"{self.path} (e.g. '{unmatched[0]}'); fix the pattern")
        if unmatched:
            print(f"skipped {len(unmatched)} file(s) whose names data.pattern does not match (first: {unmatched[0]})")
        return clips


class FSDD(AudioFolder):
    """The Free Spoken Digit Dataset: `{digit}_{speaker}_{index}.wav` at 8 kHz (resampled), tasks
    `digit` and `speaker`; the official split puts index 0-4 of every (digit, speaker) in test."""

    name = "fsdd"
    tasks = ("digit", "speaker")

    def __init__(self, root: str, task: str = "digit", **kwargs):
        kwargs.setdefault("pattern", r"(?P<digit>\d)_(?P<speaker>[a-z]+)_(?P<index>\d+)\.wav$")
        super().__init__(root, task=task, **kwargs)

    def is_test(self, relative: Path, labels: dict[str, str]) -> bool:
        return int(labels["index"]) < 5


class SpeechCommands(AudioFolder):
    """Speech Commands (v0.01 / v0.02) as unpacked: root/<word>/<speaker>_nohash_<n>.wav with
    testing_list.txt naming the test files; tasks `word` and `speaker`. `_background_noise_` is left out.
    Downloads through torchaudio where there is internet (data.download=true)."""

    name = "speech_commands"
    tasks = ("word", "speaker")

    def __init__(self, root: str, task: str = "word", download: bool = False, **kwargs):
        kwargs.setdefault("pattern", r"^(?P<word>[a-z]+)/(?P<speaker>[0-9a-f]+)_nohash_\d+\.wav$")
        self.download = download
        super().__init__(root, task=task, **kwargs)

    def files(self) -> list[Path]:
        if not self.path.is_dir() and self.download:
            torchaudio.datasets.SPEECHCOMMANDS(str(self.path.parent), download=True)
        return super().files()

    def is_test(self, relative: Path, labels: dict[str, str]) -> bool:
        if not hasattr(self, "_test_names"):
            listing = self.path / "testing_list.txt"
            self._test_names = set(listing.read_text().split()) if listing.is_file() else None
        if self._test_names is None:
            return super().is_test(relative, labels)
        return relative.as_posix() in self._test_names


class LibriSpeech(AudioFolder):
    """LibriSpeech as unpacked: root/<speaker>/<chapter>/<speaker>-<chapter>-<utterance>.flac (point
    root at a subset such as LibriSpeech/train-clean-100); task `speaker` (speaker identification),
    test_fraction of every speaker's utterances held out. Clips are cut to max_seconds."""

    name = "librispeech"
    tasks = ("speaker", "chapter")

    def __init__(self, root: str, task: str = "speaker", **kwargs):
        kwargs.setdefault("pattern", r"(?P<speaker>\d+)/(?P<chapter>\d+)/\d+-\d+-\d+\.flac$")
        super().__init__(root, task=task, **kwargs)
