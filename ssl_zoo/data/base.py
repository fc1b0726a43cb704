"""The data contract shared by every modality.

A datamodule has a `modality`, a pretraining `train_dataloader()` of (inputs, labels) batches (labels
are -1 where unknown) and `probe_splits()`: labelled train and test sets in the same input form.
Inputs are uint8 images (B, 3, H, W), token ids (B, T) int64, or `Waves` (padded audio and lengths).
What a method learns about its data it is handed (`info()` -> DataInfo) by the trainer: a method never
reads a datamodule, and data knows no method.
"""

import hashlib
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, NamedTuple

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from ssl_zoo.data.tokenizer import TextTokenizer
from ssl_zoo.errors import BadValue, UserError
from ssl_zoo.settings import Range


class Waves(NamedTuple):
    """A zero-padded batch of waveforms: audio (B, S) in [-1, 1], lengths (B,) in samples."""

    audio: torch.Tensor
    lengths: torch.Tensor

    def to(self, device, non_blocking: bool = False) -> "Waves":
        return Waves(self.audio.to(device, non_blocking=non_blocking), self.lengths.to(device, non_blocking=non_blocking))


@dataclass
class DataInfo:
    """What the trainer hands a method about the data it pretrains on."""

    batch_size: int  # per device: the global batch of the linear lr-scaling rule
    num_classes: int = 0  # of the probe task, for the online probe (0: unlabelled)
    tokenizer: "TextTokenizer | None" = None  # text: fitted to the corpus; from then on the model's own
    clip_lengths: torch.Tensor | None = None  # speech: samples in each clip


def download(what: str, root: Path, fetch) -> None:
    """fetch() (a torchvision or torchaudio dataset's download=True), its network failure said in one
    line: no internet, a server down, a proxy in the way."""
    import urllib.error

    try:
        fetch()
    except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
        reason = getattr(e, "reason", e)
        raise UserError(f"downloading {what} into {root} failed ({reason}); check the internet connection, or put the "
                        "files there yourself and set data.download=false") from None


def cache_root(cache_dir: str | None) -> Path:
    """Where prepared data is cached: cache_dir, else $SSL_ZOO_CACHE, else ~/.cache/ssl_zoo."""
    if cache_dir is not None and not str(cache_dir).strip():  # as unset, it would cache somewhere not asked for
        raise BadValue("data.cache_dir", "data.cache_dir='' names no folder; give a folder, or data.cache_dir=null "
                       "($SSL_ZOO_CACHE, else ~/.cache/ssl_zoo)")
    if cache_dir:
        from ssl_zoo.atomic import check_can_write

        check_can_write(cache_dir, "data.cache_dir", folder=True)
    return Path(cache_dir or os.environ.get("SSL_ZOO_CACHE") or Path.home() / ".cache" / "ssl_zoo").expanduser()


def stable_fraction(text: str) -> float:
    """A number in [0, 1) fixed by the text: a split by name that does not move when items are added."""
    return zlib.crc32(text.encode()) / 2**32


def digest(*parts) -> str:
    """A short stable key of plain values (for cache file names)."""
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def content_digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def content_digests(dataset: Dataset) -> list[bytes]:
    """A digest of what each item holds (its pixels, a clip's samples, an image file's bytes), through
    any Subsets: the leak check compares the probe's test items with the pretraining items by these."""
    indices = None
    while isinstance(dataset, Subset):  # Subset(Subset(d, a), b)[i] is d[a[b[i]]]
        indices = list(dataset.indices) if indices is None else [dataset.indices[i] for i in indices]
        dataset = dataset.dataset
    return dataset.digests(range(len(dataset)) if indices is None else indices)


class ProbeSplits(NamedTuple):
    train: Dataset
    test: Dataset
    num_classes: int
    task: str


class BatchedTensors(Dataset):
    """In-memory tensors indexed a whole batch at a time (DataLoader calls __getitems__ with a list of
    indices), so that a batch is one gather instead of B single-item reads and a stack."""

    def __init__(self, inputs: torch.Tensor, labels: torch.Tensor):
        if len(inputs) == 0:
            raise UserError("the dataset is empty; check the data settings (data.*)")
        self.inputs, self.labels = inputs, labels

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, i: int):
        return self.inputs[i], self.labels[i]

    def __getitems__(self, indices: list[int]):
        idx = torch.as_tensor(indices)
        return self.inputs[idx], self.labels[idx]

    def digests(self, indices) -> list[bytes]:
        indices = list(indices)
        out = []
        for start in range(0, len(indices), 4096):  # a few MB at a time (STL-10's 105k images are 2.8 GB)
            rows = self.inputs[torch.as_tensor(indices[start : start + 4096], dtype=torch.long)]
            out += [content_digest(row.tobytes()) for row in rows.reshape(len(rows), -1).contiguous().numpy()]
        return out


class ResumableSampler(DistributedSampler):
    """Shuffles by (seed, epoch) only, on one device or many (Lightning calls set_epoch), so that a
    resumed run sees the order the uninterrupted run would have seen. Its first pass starts `skip`
    indices in, to resume mid-epoch; the length stays that of a whole epoch."""

    skip = 0

    def __iter__(self):
        indices = list(super().__iter__())
        skip, self.skip = self.skip, 0
        return iter(indices[skip:])


def collate(batch):
    """Batches from BatchedTensors are already stacked; lists of samples are stacked here."""
    if isinstance(batch, tuple):
        return batch
    return torch.utils.data.default_collate(batch)


class SSLDataModule(pl.LightningDataModule):
    modality: str = "?"
    # Data settings a trained encoder depends on (speech: sample rate, clip length, features): a saved
    # model probed on other data reads that data with the settings it was trained with.
    bound_to_encoder: tuple[str, ...] = ()

    def __init__(self, batch_size: Annotated[int, Range(1, whole=True)] = 256, num_workers: Annotated[int, Range(0, whole=True)] = 0, seed: int = 0):
        super().__init__()
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.classes: list = []  # names of the probe task's classes, known after setup()
        self._ready = False

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def setup(self, stage: str | None = None) -> None:
        if not self._ready:
            self.prepare()
            self._ready = True

    # --- what a dataset defines ----------------------------------------------------------------
    def prepare(self) -> None:
        """Load or build the data; set self.classes."""
        raise NotImplementedError

    def pretrain_dataset(self) -> Dataset:
        raise NotImplementedError

    def probe_splits(self) -> ProbeSplits | None:
        """Labelled train/test data for the probe, or None when the data has no labels."""
        raise NotImplementedError

    def encoder_settings(self) -> dict:
        """What an encoder must be built with to read this data (a vocabulary size...); none by default."""
        return {}

    def method_settings(self) -> dict:
        """What a method must be built with to read this data (speech: its front end's settings); none by default."""
        return {}

    def info(self) -> DataInfo:
        """What a method pretraining on this data is told about it (after setup)."""
        self.setup()
        return DataInfo(self.batch_size, self.num_classes)

    def leak_check(self) -> dict | None:
        """Whether the probe's test items occur in what pretraining reads, by content (the digests of
        content_digests): {unit, test_items, in_pretraining}, in_pretraining 0 by construction of the
        splits; None when there is no probe task. The text corpora check token sequences instead."""
        splits = self.probe_splits()
        if splits is None:
            return None
        seen = set(content_digests(self.pretrain_dataset()))
        test = content_digests(splits.test)
        return {"unit": self.leak_unit, "test_items": len(test), "in_pretraining": sum(d in seen for d in test)}

    leak_unit = "items, by content"

    def baselines(self) -> dict[str, float]:
        """Figures of a model that learns nothing but counts, for results.json (text: the unigram
        model's held-out cross-entropy and top-1); none by default."""
        return {}

    # --- loaders -------------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        self.setup()
        dataset = self.pretrain_dataset()
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        if len(dataset) < self.batch_size * world:
            raise UserError(
                f"the pretraining set has {len(dataset)} items, fewer than one batch of "
                f"{self.batch_size * world}; lower data.batch_size or add data"
            )
        sampler = ResumableSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=self.seed, drop_last=True)
        sampler.skip = self.batch_size * self._batches_done_in_interrupted_epoch(len(sampler) // self.batch_size)
        return self.loader(dataset, sampler=sampler, drop_last=True)

    def _batches_done_in_interrupted_epoch(self, batches_per_epoch: int) -> int:
        """On a resume from a mid-epoch checkpoint: how many batches of that epoch were trained on.
        Lightning has restored its loop counters by the time it asks for the train loader."""
        fit_loop = self.trainer.fit_loop if self.trainer is not None else None
        if fit_loop is None or not fit_loop.restarting:
            return 0
        done = fit_loop.epoch_loop.batch_progress.current.processed
        return done if 0 < done < batches_per_epoch else 0

    def loader(self, dataset: Dataset, **kwargs) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=kwargs.pop("batch_size", self.batch_size),
            num_workers=self.num_workers,
            collate_fn=collate,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            **kwargs,
        )
