"""Speech data: clips of audio as padded batches of waveforms (the methods compute log-mel features
from them on the device: nn/logmel.py).

- `spoken_words` (embedded): words spoken by many synthetic voices (eSpeak NG, see speech_synth.py),
  synthesised once into a cache folder; probe tasks `voice` (speaker identification) and `word`
  (keyword spotting); the last takes of every (word, voice) are the probe's test set.
- `audio_folder`: any folder of WAV/FLAC files, labels from sub-folders or from a file-name pattern;
  `fsdd`, `speech_commands` and `librispeech` are its ready layouts.

A batch is (Waves(audio (B, S) float32, lengths (B,)), labels (B,)): every clip is resampled to
`sample_rate` when read and cut to `max_seconds`, so the encoder sees at most `max_frames()` frames.
"""

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import torch
import torchaudio
from torch.utils.data import Dataset

from ssl_zoo.data.base import (DataInfo, ProbeSplits, SSLDataModule, Waves, cache_root, content_digest, digest, download,
                              stable_fraction)
from ssl_zoo.errors import BadValue, UserError
from ssl_zoo.nn.logmel import LogMelSettings, logmel_settings
from ssl_zoo.settings import Names, Nested, OneOf, Range

AUDIO_SUFFIXES = {".wav", ".flac"}


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

    def digests(self, indices) -> list[bytes]:
        return [content_digest(self.samples[self.offsets[i] : self.offsets[i] + self.lengths[i]].numpy().tobytes())
                for i in indices]


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


class SpeechDataModule(SSLDataModule):
    """What every speech dataset shares: reading its clips (skipping or refusing unreadable ones),
    labels of the chosen task, the probe's train/test clips and the encoder's input size."""

    modality = "speech"
    name = "speech"
    tasks: tuple[str, ...] = ()
    bound_to_encoder = ("sample_rate", "max_seconds", "features")

    def __init__(self, task: str | None = None, sample_rate: Annotated[int, Range(1, whole=True)] = 16_000, max_seconds: Annotated[float, Range(0, above=True)] = 1.0,
                 features: Annotated[dict | None, Nested(LogMelSettings)] = None, bad_files: Annotated[str, OneOf(("skip", "error"))] = "skip",
                 **base):
        super().__init__(**base)
        if bad_files not in ("skip", "error"):
            raise UserError(f"data.bad_files must be skip or error, got '{bad_files}'")
        self.task, self.sample_rate, self.max_seconds, self.bad_files = task, sample_rate, max_seconds, bad_files
        self.features = dict(features or {})
        self.framing = logmel_settings(sample_rate, self.features)  # how the method's front end will frame the clips
        if self.max_samples < self.framing.win:
            raise UserError(f"data.max_seconds={max_seconds} is shorter than one analysis window "
                            f"({self.framing.win / sample_rate:g} s); set it to the longest clip length to keep, e.g. 1.0")

    # --- what a dataset defines ------------------------------------------------------------------
    def clips(self) -> list[Clip]:
        raise NotImplementedError

    # --- preparation -----------------------------------------------------------------------------
    @property
    def max_samples(self) -> int:
        return int(self.max_seconds * self.sample_rate)

    def max_frames(self) -> int:
        return int(self.framing.frames(torch.tensor(self.max_samples)))

    def encoder_settings(self) -> dict:
        return {"input_dim": self.framing.n_mels, "block_size": self.max_frames()}

    def method_settings(self) -> dict:
        """The method's log-mel front end frames the clips as this data does: one set of settings."""
        return {"sample_rate": self.sample_rate, "features": dict(self.features)}

    def info(self) -> DataInfo:
        self.setup()
        return DataInfo(self.batch_size, self.num_classes, clip_lengths=self.all_clips.lengths)

    def prepare(self) -> None:
        clips = self.clips()
        tasks = list(self.tasks) or sorted({t for c in clips for t in c.labels})
        if self.task is None and tasks:
            self.task = tasks[0]
        if tasks and self.task not in tasks:
            raise UserError(f"data '{self.name}' has no task '{self.task}'; set data.task to one of: {', '.join(tasks)}")
        audio, kept, problems = [], [], {}
        for clip in clips:
            try:
                wave = read_audio(clip.path, self.sample_rate)[: self.max_samples]
                if len(wave) < self.framing.win:
                    raise ValueError(f"shorter than one {1000 * self.framing.win / self.sample_rate:g} ms window")
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
        if not kept and len(problems) == 1 and "shorter" in next(iter(problems)):  # every file read, every clip too short
            raise UserError(f"every clip of data '{self.name}' ({len(clips)} file(s)) is {next(iter(problems))} "
                            "(data.features.win_ms); give a shorter window, or longer clips (data.max_seconds)")
        if not kept:
            raise UserError(f"no usable audio in data '{self.name}' ({len(clips)} file(s) found, none readable)")
        self.classes = sorted({c.labels[self.task] for c in kept if self.task in c.labels}, key=natural_key)
        index = {label: i for i, label in enumerate(self.classes)}
        labels = torch.tensor([index.get(c.labels.get(self.task), -1) for c in kept])
        lengths = torch.tensor([len(a) for a in audio])
        test = torch.tensor([c.test for c in kept])
        samples = torch.cat(audio)
        self.all_clips = Utterances(samples, lengths, labels)
        self.train_index = torch.nonzero(~test).flatten().tolist()
        self.test_index = torch.nonzero(test).flatten().tolist()
        hours = lengths.sum().item() / self.sample_rate / 3600
        print(f"{self.name}: {len(kept)} clips ({hours:.2f} h at {self.sample_rate} Hz), task '{self.task}' "
              f"with {self.num_classes} classes, {len(self.test_index)} test clips")

    leak_unit = "utterances, by their samples"

    def pretrain_dataset(self) -> Dataset:
        return torch.utils.data.Subset(self.all_clips, self.train_index) if self.test_index else self.all_clips

    def probe_splits(self) -> ProbeSplits | None:
        self.setup()
        if self.num_classes == 1:  # labelled, but nothing to tell apart
            raise UserError(f"data '{self.name}' has 1 class for data.task={self.task}; labels (the probe's, embed-plot's "
                            "colours) need at least 2: give more (e.g. data.words), or train with probe.enabled=false")
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

    def __init__(self, words: Annotated[list[str], Names()] = DIGIT_WORDS, num_voices: Annotated[int, Range(1, whole=True)] = 20,
                 takes: Annotated[int, Range(2, whole=True)] = 8, test_takes: Annotated[int, Range(1, whole=True)] = 2,
                 cache_dir: str | None = None, **kwargs):
        super().__init__(**kwargs)
        if not 0 < test_takes < takes:
            raise UserError(f"data.test_takes must be between 1 and data.takes - 1 ({takes - 1}), got {test_takes}")
        self.words, self.num_voices, self.takes, self.test_takes = list(words), num_voices, takes, test_takes
        self.cache_dir = cache_dir

    def clips(self) -> list[Clip]:
        from ssl_zoo.data.speech_synth import SYNTH_VERSION, build_spoken_words, make_voices

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

    def __init__(self, root: str, pattern: str | None = None, test_fraction: Annotated[float, Range(0, 1)] = 0.2, **kwargs):
        super().__init__(**kwargs)
        self.path, self.test_fraction = Path(root).expanduser(), test_fraction
        try:
            self.pattern = re.compile(pattern) if pattern else None
        except re.error as e:
            raise UserError(f"data.pattern '{pattern}' is not a regular expression ({e})") from None
        if self.pattern is not None and self.task is not None and self.task not in self.pattern.groupindex:
            named = ", ".join(self.pattern.groupindex) or "none"
            raise BadValue("data.task", f"data.task={self.task} is not a named group of data.pattern (its named groups: "
                           f"{named}); name the label's group in the pattern, e.g. (?P<{self.task}>...), or set data.task "
                           "to one of its groups")

    def files(self) -> list[Path]:
        if self.path.is_file():
            raise UserError(f"data.root={self.path} is a file; give the folder that holds the WAV/FLAC files")
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
        if not kwargs.get("pattern"):  # null or empty too: the dataset's own file names
            kwargs["pattern"] = r"(?P<digit>\d)_(?P<speaker>[a-z]+)_(?P<index>\d+)\.wav$"
        super().__init__(root, task=task, **kwargs)
        if "index" not in self.pattern.groupindex:  # the official split is by it
            raise BadValue("data.pattern", f"data.pattern '{self.pattern.pattern}' has no group named index (the recording's "
                           "number, which puts 0-4 in test); name it (?P<index>\\d+), or leave data.pattern out")

    def is_test(self, relative: Path, labels: dict[str, str]) -> bool:
        return int(labels["index"]) < 5


class SpeechCommands(AudioFolder):
    """Speech Commands (v0.01 / v0.02) as unpacked: root/<word>/<speaker>_nohash_<n>.wav with
    testing_list.txt naming the test files; tasks `word` and `speaker`. `_background_noise_` is left out.
    Downloads through torchaudio where there is internet (data.download=true)."""

    name = "speech_commands"
    tasks = ("word", "speaker")

    def __init__(self, root: str, task: str = "word", download: bool = False, **kwargs):
        if not kwargs.get("pattern"):  # null or empty too: the dataset's own file names
            kwargs["pattern"] = r"^(?P<word>[a-z]+)/(?P<speaker>[0-9a-f]+)_nohash_\d+\.wav$"
        self.download = download
        super().__init__(root, task=task, **kwargs)

    def files(self) -> list[Path]:
        if not self.path.is_dir() and self.download:
            download("Speech Commands", self.path.parent,
                     lambda: torchaudio.datasets.SPEECHCOMMANDS(str(self.path.parent), download=True))
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
        if not kwargs.get("pattern"):  # null or empty too: the dataset's own file names
            kwargs["pattern"] = r"(?P<speaker>\d+)/(?P<chapter>\d+)/\d+-\d+-\d+\.flac$"
        super().__init__(root, task=task, **kwargs)
