"""Text data: a corpus tokenized once into a memory-mapped array of ids, read as fixed-length windows.

- `python_stdlib` (embedded): the standard library's source and the `pydoc_data` documentation topics
  that ship with every Python; probe task: which standard-library package a snippet comes from.
- `text_file`: any text file, glob or folder of .txt files (e.g. Tiny Shakespeare); no probe task.
- `icl_mix`: natural text interleaved with in-context task episodes (see data/icl_tasks.py).

The tokenizer and the ids are cached under `cache_dir` (default ~/.cache/ssl_zoo, or $SSL_ZOO_CACHE),
keyed by the corpus and the tokenizer settings, so that a corpus of gigabytes is tokenized once and then
streamed from disk: a batch reads only its windows.
"""

import codecs
import glob as globlib
import json
import random
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ssl_zoo.atomic import atomic_write
from ssl_zoo.data.base import BatchedTensors, DataInfo, ProbeSplits, SSLDataModule, cache_root, digest, stable_fraction
from ssl_zoo.data.icl_tasks import (EVAL_WORDS, FAMILIES, HELD_OUT, TRAIN_WORDS, VAL_WORDS, check_families, episode_text,
                                    example_line, operand_pairs)
from ssl_zoo.data.tokenizer import KINDS, NUM_SPECIAL, TextTokenizer
from ssl_zoo.errors import BadValue, UserError
from ssl_zoo.settings import Names, Range


class TokenWindows(Dataset):
    """Windows of `length` ids starting at the given offsets of a (memory-mapped) id array.
    A batch is one fancy-indexing read: (B, length) int64, with labels -1 (unlabelled)."""

    def __init__(self, ids: np.ndarray, length: int, starts: np.ndarray):
        self.ids, self.length, self.starts = ids, length, starts

    def __len__(self) -> int:
        return len(self.starts)

    def __getitems__(self, indices: list[int]):
        starts = self.starts[np.asarray(indices)]
        windows = self.ids[starts[:, None] + np.arange(self.length)]  # (B, length)
        return torch.from_numpy(windows.astype(np.int64)), torch.full((len(starts),), -1)

    def __getitem__(self, i: int):
        inputs, labels = self.__getitems__([i])
        return inputs[0], labels[0]


def occur_in(ids: np.ndarray, snippets: np.ndarray) -> np.ndarray:
    """For each snippet (N, L) of token ids, whether it occurs as L consecutive ids of ids: (N,) bool."""
    haystack, size = np.ascontiguousarray(ids).tobytes(), ids.dtype.itemsize
    found = np.zeros(len(snippets), dtype=bool)
    for i, snippet in enumerate(np.asarray(snippets).astype(ids.dtype)):
        needle, at = snippet.tobytes(), -1
        while (at := haystack.find(needle, at + 1)) != -1 and at % size:  # only whole tokens count
            pass
        found[i] = at != -1
    return found


def write_ids(path: Path, id_lists: Iterator[list[int]], dtype) -> int:
    """Stream token ids to a raw binary file (atomically); their count."""
    count = 0

    def stream(f):
        nonlocal count
        for ids in id_lists:
            f.write(np.asarray(ids, dtype=dtype).tobytes())
            count += len(ids)

    atomic_write(path, stream)
    return count


class TextDataModule(SSLDataModule):
    modality = "text"
    name = "text"

    def __init__(
        self,
        tokenizer: str = "char",
        vocab_size: Annotated[int, Range(8, whole=True)] = 2048,
        block_size: Annotated[int, Range(1, whole=True)] = 128,
        stride: Annotated[int | None, Range(1, whole=True, nullable=True)] = None,
        val_fraction: Annotated[float, Range(0, 0.99, above=True)] = 0.1,
        val_windows: Annotated[int, Range(1, whole=True)] = 256,
        probe_length: Annotated[int, Range(1, whole=True)] = 64,
        probe_train_per_class: Annotated[int, Range(1, whole=True)] = 200,
        probe_test_per_class: Annotated[int, Range(1, whole=True)] = 50,
        cache_dir: str | None = None,
        model_tokenizer: TextTokenizer | None = None,
        **base,
    ):
        """model_tokenizer: a trained model's own tokenizer, to read the text as that model reads it
        (probing a checkpoint, resuming a run) instead of fitting one to the corpus."""
        super().__init__(**base)
        if tokenizer not in KINDS:
            raise UserError(f"unknown tokenizer '{tokenizer}'; set data.tokenizer to one of: {', '.join(KINDS)}")
        if tokenizer == "bpe" and vocab_size < 256 + NUM_SPECIAL:  # byte-level BPE starts from all 256 bytes
            raise BadValue("data.vocab_size", f"data.vocab_size={vocab_size} is below what byte-level BPE starts from "
                           f"(256 bytes and {NUM_SPECIAL} special tokens); give at least {256 + NUM_SPECIAL}, or data.tokenizer=char")
        self.tokenizer_kind, self.tokenizer_vocab_size = tokenizer, vocab_size
        self.block_size, self.stride = block_size, stride or block_size
        self.val_fraction, self.val_windows = val_fraction, val_windows
        self.probe_length = probe_length
        self.probe_per_class = (probe_train_per_class, probe_test_per_class)
        self.cache_dir = cache_dir
        self.tokenizer: TextTokenizer | None = model_tokenizer

    # --- what a corpus defines -----------------------------------------------------------------
    def corpus_key(self) -> str:
        """Identifies the corpus for the cache (cheap: names, sizes, dates; not the contents)."""
        raise NotImplementedError

    def corpus_chunks(self) -> Iterator[str]:
        """The corpus as a sequence of text chunks, in order."""
        raise NotImplementedError

    def held_out_chunks(self) -> Iterator[str] | None:
        """Validation text apart from the corpus (drawn from held-out pools), or None: then the last
        val_fraction of the corpus is held out."""
        return None

    def probe_texts(self) -> dict[str, tuple[str, str]] | None:
        """{label: (train text, test text)} for the probe task, or None when the corpus has none."""
        return None

    probe_task = "none"
    # a trained model reads text with its own tokenizer and vocabulary, and its context is its own: other text
    # probed is read with them (said when given otherwise); the probe's snippets are data.probe_length long
    bound_to_encoder = ("tokenizer", "vocab_size", "block_size")

    # --- preparation ---------------------------------------------------------------------------
    def prepare(self) -> None:
        root = cache_root(self.cache_dir) / "text"
        corpus = self.corpus_key()
        if self.tokenizer is None:
            self.tokenizer = self._cached_tokenizer(root / f"tokenizer-{digest(corpus, self.tokenizer_kind, self.tokenizer_vocab_size)}.json")
        ids = self._cached_ids(root, corpus, self.corpus_chunks)
        held_out = self.held_out_chunks()
        n_val = max(self.block_size + 1, int(self.val_fraction * len(ids))) if held_out is None else 0
        val_ids = ids[len(ids) - n_val:] if held_out is None else self._cached_ids(root, corpus + "|held out", lambda: held_out)
        if len(ids) - n_val < 2 * (self.block_size + 1) or len(val_ids) < self.block_size + 1:
            raise UserError(
                f"the corpus has only {len(ids)} tokens, too few for windows of {self.block_size}; "
                "give more text or lower data.block_size"
            )
        self.train_ids, self.val_ids = ids[: len(ids) - n_val], val_ids
        probe = self.probe_texts()
        self._probe_labels = sorted(probe) if probe else []
        self._probe_text = probe
        self.classes = self._probe_labels

    def _cached_ids(self, root: Path, key: str, chunks) -> np.memmap:
        """The ids of a text (chunks(): its chunks), tokenized once into the cache and memory-mapped."""
        dtype = np.uint16 if self.tokenizer.vocab_size <= 2**16 else np.uint32
        path = root / f"ids-{digest(key, self.tokenizer.to_str())}.{np.dtype(dtype).name}"
        if not path.exists():
            print(f"tokenizing the corpus once into {path} ...")
            if write_ids(path, self.tokenizer.encode_chunks(chunks()), dtype) == 0:
                path.unlink()
                raise UserError(f"the text of data '{self.name}' is empty; point data.path at a file with text in it")
        return np.memmap(path, dtype=dtype, mode="r")

    def _cached_tokenizer(self, path: Path) -> TextTokenizer:
        if path.exists():
            return TextTokenizer.from_str(path.read_text())
        print(f"training a {self.tokenizer_kind} tokenizer on the corpus ...")
        tokenizer = TextTokenizer.train(self.tokenizer_kind, self.corpus_chunks(), self.tokenizer_vocab_size)
        if tokenizer.vocab_size <= NUM_SPECIAL:
            raise UserError(f"the text of data '{self.name}' is empty; point data.path at a file with text in it")
        atomic_write(path, tokenizer.to_str())
        return tokenizer

    def encoder_settings(self) -> dict:
        """What the encoder must be built with to read this data."""
        self.setup()
        return {"vocab_size": self.tokenizer.vocab_size, "block_size": self.block_size}

    def info(self) -> DataInfo:
        self.setup()
        return DataInfo(self.batch_size, self.num_classes, tokenizer=self.tokenizer)

    # --- datasets ------------------------------------------------------------------------------
    def pretrain_dataset(self) -> Dataset:
        # Windows of block_size + 1 ids: GPT predicts ids[1:] from ids[:-1]; BERT reads ids[:-1].
        last = len(self.train_ids) - (self.block_size + 1)
        return TokenWindows(self.train_ids, self.block_size + 1, np.arange(0, last + 1, self.stride))

    def val_dataset(self) -> Dataset:
        """Up to val_windows windows spread evenly over the held-out tail (the same ones every time)."""
        last = len(self.val_ids) - (self.block_size + 1)
        count = min(self.val_windows, last // (self.block_size + 1) + 1)
        return TokenWindows(self.val_ids, self.block_size + 1, np.linspace(0, last, count).astype(np.int64))

    def val_dataloader(self) -> DataLoader:
        self.setup()
        return self.loader(self.val_dataset(), shuffle=False)

    def probe_splits(self) -> ProbeSplits | None:
        """Snippets of probe_length tokens of each label's train and test text; a test snippet whose
        tokens occur in the pretraining ids (a passage copied between files, a common header) is
        dropped, so that none is in what pretraining reads (leak_check counts them again)."""
        if not self._probe_labels:
            return None
        if getattr(self, "_probe_splits", None) is not None:  # the search below is worth doing once
            return self._probe_splits
        rng = np.random.default_rng(self.seed)
        parts = {"train": ([], []), "test": ([], [])}
        self.dropped_test_snippets = 0
        for label, name in enumerate(self._probe_labels):
            for split, text, per_class in zip(("train", "test"), self._probe_text[name], self.probe_per_class):
                ids = np.asarray(self.tokenizer.encode(text), dtype=np.int64)
                n = len(ids) // self.probe_length
                snippets = ids[: n * self.probe_length].reshape(n, self.probe_length)  # non-overlapping
                order = rng.permutation(n)
                if split == "test":  # in the shuffled order, the first per_class that pretraining never reads
                    kept = []
                    for start in range(0, n, per_class):
                        block = order[start : start + per_class]
                        seen = occur_in(self.train_ids, snippets[block])
                        self.dropped_test_snippets += int(seen.sum())
                        kept += list(block[~seen])
                        if len(kept) >= per_class:
                            break
                    order = np.array(kept[:per_class], dtype=np.int64)
                chosen = np.sort(order[:per_class])
                parts[split][0].append(snippets[chosen])
                parts[split][1].append(np.full(len(chosen), label))
        train, test = (
            BatchedTensors(torch.from_numpy(np.concatenate(x)), torch.from_numpy(np.concatenate(y)))
            for x, y in parts.values()
        )
        self._probe_splits = ProbeSplits(train, test, self.num_classes, self.probe_task)
        return self._probe_splits

    def leak_check(self) -> dict | None:
        """How many probe test snippets occur as token sequences in the pretraining ids (0: they are
        dropped), with how many were dropped and how the corpus was split (split_record)."""
        splits = self.probe_splits()
        if splits is None:
            return None
        found = occur_in(self.train_ids, splits.test.inputs.numpy())
        return {"unit": f"snippets of {self.probe_length} tokens, by their tokens", "test_items": len(found),
                "in_pretraining": int(found.sum()), "dropped_before": self.dropped_test_snippets, **self.split_record()}

    def split_record(self) -> dict:
        """How the probe's test text is kept out of the corpus, for results.json (none by default)."""
        return {}

    def baselines(self) -> dict[str, float]:
        """What a model that ignores context scores on the held-out text: the cross-entropy (nats per
        token) of the train-set unigram distribution (add-one smoothed), GPT's figure to beat; and the
        top-1 accuracy of always guessing the most frequent ordinary token, BERT's."""
        vocab = self.tokenizer.vocab_size
        counts = np.zeros(vocab, dtype=np.float64)
        for start in range(0, len(self.train_ids), 1 << 24):  # chunked: the array may be huge
            counts += np.bincount(self.train_ids[start : start + (1 << 24)], minlength=vocab)
        probs = (counts + 1) / (counts.sum() + vocab)
        val = np.asarray(self.val_ids)
        most_frequent = NUM_SPECIAL + int(counts[NUM_SPECIAL:].argmax())
        return {
            "unigram_entropy": float(-np.log(probs[val]).mean()),
            "unigram_top1_acc": float((val == most_frequent).mean()),
        }


# --- the corpora --------------------------------------------------------------------------------
def read_chunks(path: Path, size: int = 1 << 20, errors: str = "strict") -> Iterator[str]:
    """A UTF-8 text file in chunks of about `size` characters, cut after a newline. errors="strict"
    refuses bytes that are not UTF-8 in one line naming the file and the byte; "replace" decodes them
    as U+FFFD."""
    decoder, offset, carry = codecs.getincrementaldecoder("utf-8")(errors), 0, ""
    with open(path, "rb") as f:
        while True:
            raw = f.read(size)
            try:
                block = carry + decoder.decode(raw, final=not raw)
            except UnicodeDecodeError as e:
                raise UserError(f"{path} is not UTF-8 text (byte {offset + e.start:,} is 0x{raw[e.start]:02x}); convert it "
                                "to UTF-8, or set data.encoding_errors=replace to read such bytes as U+FFFD") from None
            offset += len(raw)
            if not raw:
                break
            cut = block.rfind("\n") + 1 or len(block)
            carry = block[cut:]
            if cut:
                yield block[:cut]
    if carry:
        yield carry


class TextFile(TextDataModule):
    """Any text: a file, a glob (`data/*.txt`) or a folder (its .txt files), read in sorted order."""

    def __init__(self, path: str, encoding_errors: str = "strict", **kwargs):
        super().__init__(**kwargs)
        if encoding_errors not in ("strict", "replace"):
            raise UserError(f"data.encoding_errors must be strict or replace, got '{encoding_errors}'")
        self.path, self.encoding_errors = str(path), encoding_errors

    name = "text_file"

    def files(self) -> list[Path]:
        target = Path(self.path).expanduser()
        if target.is_dir():
            files = sorted(target.rglob("*.txt"))
        elif any(c in self.path for c in "*?["):
            files = sorted(Path(p) for p in globlib.glob(str(target), recursive=True) if Path(p).is_file())
        else:
            files = [target] if target.is_file() else []
        if not files:
            raise UserError(f"no text file at data.path={self.path}; give a file, a glob such as 'texts/*.txt', or a folder of .txt files")
        if all(f.stat().st_size == 0 for f in files):
            raise UserError(f"the text file(s) at data.path={self.path} are empty; give a file with text in it")
        for f in files:
            try:
                with open(f, "rb") as handle:
                    head = handle.read(8192)
            except OSError as e:
                raise UserError(f"cannot read the text file {f} ({e.strerror}); check its permissions") from None
            if b"\0" in head:
                raise UserError(f"{f} looks binary (a NUL byte in its first 8 kB), not text; point data.path at text files")
        return files

    def corpus_key(self) -> str:
        return json.dumps([[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in self.files()])

    def corpus_chunks(self) -> Iterator[str]:
        for f in self.files():
            yield from read_chunks(f, errors=self.encoding_errors)


STDLIB_PROBE_PACKAGES = ("asyncio", "email", "http", "importlib", "json", "logging", "multiprocessing", "unittest", "urllib", "xml")


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_sources(package: str | None = None) -> list[Path]:
    """The standard library's .py files (a package's, or all), tests and site-packages left out."""
    root = stdlib_dir() / package if package else stdlib_dir()
    skip = {"test", "tests", "site-packages", "idle_test", "__pycache__"}
    return sorted(p for p in root.rglob("*.py") if not skip & set(p.relative_to(stdlib_dir()).parts[:-1]))


class PythonStdlib(TextDataModule):
    """The text that ships with this Python: pydoc_data's documentation topics (English prose) and
    the standard library's source (code), up to max_chars characters. The probe: which of ten
    standard-library packages a snippet comes from. Split by file: each package's files in an order
    fixed by their names, the last ones (at least test_share of its characters) give the test
    snippets, and the pretraining corpus never reads them; the other files give the train snippets."""

    name = "python_stdlib"
    probe_task = "stdlib_package"

    def __init__(self, max_chars: Annotated[int, Range(1, whole=True)] = 3_000_000, packages: Annotated[list[str], Names(at_least=2)] = STDLIB_PROBE_PACKAGES,
                 test_share: Annotated[float, Range(0.01, 0.99)] = 0.2, **kwargs):
        super().__init__(**kwargs)
        self.max_chars, self.packages, self.test_share = max_chars, list(packages), test_share

    def probe_files(self) -> dict[str, tuple[list[Path], list[Path]]]:
        """{package: (train files, test files)}: in the order of a hash of their names (a split that does
        not move when a file is added), each file goes to test while test stays within test_share of the
        package's characters (the first always does, and one is always left for train)."""
        out = {}
        for package in self.packages:
            files = sorted(stdlib_sources(package), key=lambda p: stable_fraction(p.relative_to(stdlib_dir()).as_posix()))
            if len(files) < 2:
                raise UserError(f"'{package}' is not a standard-library package of this Python with two files or more; "
                                "fix data.packages")
            budget = self.test_share * sum(p.stat().st_size for p in files)
            test, size = [], 0
            for f in files[:-1]:
                if not test or size + f.stat().st_size <= budget:
                    test.append(f)
                    size += f.stat().st_size
            out[package] = ([f for f in files if f not in test], test)
        return out

    def test_files(self) -> set[Path]:
        return {f for _, test in self.probe_files().values() for f in test}

    def corpus_key(self) -> str:
        held_out = digest(*sorted(str(f) for f in self.test_files()))
        return f"python_stdlib:{sys.version_info[:2]}:{stdlib_dir()}:{self.max_chars}:without {held_out}"

    def corpus_chunks(self) -> Iterator[str]:
        from pydoc_data.topics import topics

        test_files = self.test_files()
        files = [p for p in stdlib_sources() if p not in test_files]  # the probe's test files are never read
        random.Random(0).shuffle(files)  # a mix of packages under any cap, the same on every run
        texts = ["\n\n".join(topics[k] for k in sorted(topics))] + [p.read_text(encoding="utf-8", errors="replace") for p in files]
        budget = self.max_chars
        for text in texts:
            if budget <= 0:
                break
            yield text[:budget] + "\n\n"
            budget -= len(text) + 2

    def probe_texts(self) -> dict[str, tuple[str, str]]:
        def read(files):
            return "\n\n".join(p.read_text(encoding="utf-8", errors="replace") for p in files)

        return {package: (read(train), read(test)) for package, (train, test) in self.probe_files().items()}

    def split_record(self) -> dict:
        files = self.probe_files()
        return {"by": "file", "test_share": self.test_share,
                "test_files": {package: [f.relative_to(stdlib_dir()).as_posix() for f in test] for package, (_, test) in files.items()}}


class ICLMix(TextDataModule):
    """Natural text (the pydoc topics) interleaved with in-context task episodes: a description line
    (sometimes), 0 to max_shots solved demonstrations and a solved query of one family, so that a small
    GPT can learn to learn from demonstrations. What evaluation asks about is kept out by
    construction: the episodes use the training families only (data.held_out are never shown) on the
    training words and operand pairs; the held-out text (validation) is the last val_fraction of the
    natural paragraphs with episodes on the val pool; the probe (which family a line belongs to)
    trains on val lines and tests on eval lines. episodes=0: natural text only (a baseline)."""

    name = "icl_mix"
    probe_task = "icl_family"

    def __init__(self, families: Annotated[list[str] | None, Names(nullable=True)] = None,
                 held_out: Annotated[list[str] | None, Names(at_least=0, nullable=True)] = None,
                 words: Annotated[list[str] | None, Names(nullable=True)] = None,
                 episodes: Annotated[int, Range(0, whole=True)] = 20_000,
                 max_shots: Annotated[int, Range(0, whole=True)] = 8,
                 description_prob: Annotated[float, Range(0, 1)] = 0.5,
                 context_share: Annotated[float | None, Range(0, 1, nullable=True)] = None,
                 natural_chars: Annotated[int, Range(1, whole=True)] = 500_000,
                 digits: Annotated[int, Range(1, 3, whole=True)] = 2, **kwargs):
        super().__init__(**kwargs)
        self.held_out = list(HELD_OUT if held_out is None else held_out)
        self.families = list(families) if families is not None else [f for f in FAMILIES if f not in self.held_out]
        check_families(self.families, self.held_out)
        self.words = list(words) if words is not None else list(TRAIN_WORDS)
        seen = sorted(set(self.words) & set(EVAL_WORDS))
        if seen:
            raise UserError(f"data.words holds evaluation words ({', '.join(seen[:5])}{', ...' if len(seen) > 5 else ''}): "
                            "evaluation would ask about words training saw; take them out")
        uses_words = any(FAMILIES[f].kind != "number" for f in self.families)
        if episodes and uses_words and len(set(self.words)) < max_shots + 1:  # demonstrations and query: different words
            raise BadValue("data.words", f"data.words has {len(set(self.words))} different word(s); an episode of up to "
                           f"data.max_shots={max_shots} demonstrations and a query needs {max_shots + 1}: give more words "
                           "or lower data.max_shots")
        if context_share is not None and not any(FAMILIES[f].kind == "context" for f in self.families):
            raise BadValue("data.context_share", f"data.context_share={context_share} is the share of context families' "
                           "episodes, but data.families has none; drop data.context_share or add a context family")
        self.episodes, self.max_shots, self.description_prob = episodes, max_shots, description_prob
        self.context_share, self.natural_chars, self.digits = context_share, natural_chars, digits

    def splits(self) -> dict[str, str]:
        """{family: trained | held_out}: how evaluation reports each family."""
        return {**{f: "trained" for f in self.families}, **{f: "held_out" for f in self.held_out}}

    def split_record(self) -> dict:
        return {"by": "word pool: probe train on the validation words, probe test on the evaluation words",
                "families": self.splits()}

    def corpus_key(self) -> str:
        import ssl_zoo.data.icl_tasks as tasks  # its code makes the episodes: a change to it is another corpus

        return json.dumps(["icl_mix", digest(Path(tasks.__file__).read_text()), sys.version_info[:2], self.families,
                           self.words, self.episodes, self.max_shots, self.description_prob, self.context_share,
                           self.natural_chars, self.digits, self.val_fraction])

    def natural_paragraphs(self) -> tuple[list[str], list[str]]:
        """(training, held-out) paragraphs of the pydoc topics, up to natural_chars in all."""
        from pydoc_data.topics import topics

        paragraphs, budget = [], self.natural_chars
        for p in (p for k in sorted(topics) for p in topics[k].split("\n\n") if p.strip()):
            if budget <= 0:
                break
            paragraphs.append(p)
            budget -= len(p)
        cut = len(paragraphs) - max(1, int(self.val_fraction * len(paragraphs)))
        return paragraphs[:cut], paragraphs[cut:]

    def mix(self, paragraphs: list[str], episodes: int, split: str, words: list[str], seed: int) -> Iterator[str]:
        """The paragraphs, with `episodes` episodes spread evenly between them (families drawn at random)."""
        rng = random.Random(seed)
        context = [FAMILIES[name] for name in self.families if FAMILIES[name].kind == "context"]
        others = [FAMILIES[name] for name in self.families if FAMILIES[name].kind != "context"]
        share = len(context) / len(self.families) if self.context_share is None else self.context_share
        per_paragraph, owed = episodes / max(1, len(paragraphs)), 0.0
        for p in paragraphs:
            pieces = [p]
            owed += per_paragraph
            while owed >= 1:
                owed -= 1
                family = rng.choice(context if context and (not others or rng.random() < share) else others)
                pool = operand_pairs(split, self.digits) if family.kind == "number" else words
                pieces.append(episode_text(family, rng, pool, rng.randint(0, self.max_shots), rng.random() < self.description_prob, split))
            yield "\n\n".join(pieces) + "\n\n"

    def corpus_chunks(self) -> Iterator[str]:
        train, held_out = self.natural_paragraphs()
        yield from self.mix(train, self.episodes, "train", self.words, seed=0)

    def held_out_chunks(self) -> Iterator[str]:
        train, held_out = self.natural_paragraphs()
        episodes = round(self.episodes * len(held_out) / max(1, len(train)))
        return self.mix(held_out, episodes, "val", VAL_WORDS, seed=1)

    def probe_texts(self) -> dict[str, tuple[str, str]]:
        """Lines of each training family: on the val pool (probe train) and the eval pool (probe test)."""
        out = {}
        for name in self.families:
            family, texts = FAMILIES[name], []
            for split in ("val", "eval"):
                rng, pool = random.Random(f"probe|{name}|{split}"), family.pool(split, self.digits)
                lines = [example_line(family.episode(rng, pool, 1, split=split)[1]) for _ in range(400)]
                texts.append("\n".join(lines))
            out[name] = tuple(texts)
        return out
