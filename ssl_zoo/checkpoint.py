"""The checkpoint: its format, its one atomic writer, and reading it back into a method.

A checkpoint is Lightning's (weights, optimizer and loop state, callback state) plus
`ssl_zoo_config`, the resolved run config that rebuilds the method without its data, and
`ssl_zoo_format`, the version of that layout. Whatever else a model needs to run is the method's own
state, written and read by its `on_save_checkpoint` / `on_load_checkpoint` (text: the tokenizer).
Reading never runs code from the file (`torch.load(weights_only=True)`). Checkpoints of an older
layout are brought up to date as they are read (`upgrade`).
"""

import csv
import signal
import threading
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.plugins.io import TorchCheckpointIO

from ssl_zoo.atomic import atomic_write
from ssl_zoo.build import build_method
from ssl_zoo.errors import BadValue, UserError

CONFIG_KEY = "ssl_zoo_config"  # the resolved run config
FORMAT_KEY, FORMAT = "ssl_zoo_format", 2  # format 1 (no key) was written before ssl_zoo/checkpoint.py existed
HEADS_LEFT_BEHIND = ("online_head.", "online_acc.")  # trained with the encoder, not part of the model

# Format 1 named classes by where they lived then, and copied the batch size into the optimizer settings.
MOVED = {"ssl_zoo.data.image_views.ImageViews": "ssl_zoo.views.ImageViews"}


def upgrade(config: dict) -> dict:
    """A stored run config of an older format, as the current code reads it (format 1 -> 2)."""
    def visit(node):
        if isinstance(node, dict):
            if node.get("_target_") in MOVED:
                node["_target_"] = MOVED[node["_target_"]]
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(config)
    (config.get("method", {}).get("optim") or {}).pop("batch_size", None)  # now the datamodule's, handed over
    return config


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, through atomic_write: never a half-written last.ckpt."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        atomic_write(path, lambda f: torch.save(checkpoint, f))


class RunRecord(Callback):
    """Keeps the resolved config in every checkpoint, adds up training time across resumes, keeps the
    last logged metrics (a run resumed after its last step, e.g. killed in the probe, logs none: it
    keeps the checkpoint's) and flushes metrics.csv with each checkpoint."""

    def __init__(self, config: dict):
        self.config, self.seconds, self._start, self._trainer = config, 0.0, None, None
        self.final_metrics: dict[str, float] = {}

    @property
    def final_loss(self) -> float | None:
        return self.final_metrics.get("train/loss")

    def setup(self, trainer, pl_module, stage):
        self._trainer = trainer

    def snapshot(self) -> None:
        """The metrics last logged, as numbers: read when a checkpoint is written and at the end (not
        at every step, which would wait for the GPU at every step)."""
        if self._trainer is not None and self._trainer.callback_metrics:
            self.final_metrics = {k: float(v) for k, v in self._trainer.callback_metrics.items()}

    def on_train_start(self, trainer, pl_module):
        self._start = time.perf_counter()

    def elapsed(self) -> float:
        return self.seconds + (time.perf_counter() - self._start if self._start else 0.0)

    def on_train_end(self, trainer, pl_module):
        self.seconds, self._start = self.elapsed(), None
        self.snapshot()

    def state_dict(self):
        self.snapshot()
        return {"seconds": self.elapsed(), "final_metrics": self.final_metrics}

    def load_state_dict(self, state):
        self.seconds = state["seconds"]
        old_loss = state.get("final_loss")  # what a checkpoint written before final_metrics were kept holds
        self.final_metrics = state.get("final_metrics") or ({"train/loss": old_loss} if old_loss is not None else {})

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        checkpoint[CONFIG_KEY], checkpoint[FORMAT_KEY] = self.config, FORMAT
        for logger in trainer.loggers:  # metrics.csv holds every row up to the checkpoint: a run killed after it loses none
            logger.save()


class RunInterrupted(Exception):
    """Training stopped by SIGINT or SIGTERM, its checkpoint saved: the message says how to continue."""


class StopOnSignal(Callback):
    """SIGINT (Ctrl-C) or SIGTERM (a scheduler's) during fit: the step under way is finished, its
    checkpoint saved to `path` as the periodic ones are (so that a resume is exact), then training
    stops; a second signal stops at once, as usual."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, path: Path):
        self.path, self.received, self._previous, self.step_at_start = path, None, {}, 0

    def on_fit_start(self, trainer, pl_module):
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._previous = {s: signal.signal(s, self._note) for s in self.SIGNALS}

    def _note(self, signum, frame):
        if self.received is not None:  # asked twice: stop now
            self._restore()
            signal.raise_signal(signum)
        self.received = signal.Signals(signum).name

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.step_at_start = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        # Under gradient accumulation, only after a micro-batch that stepped the optimizer: a checkpoint
        # holds no gradients, so one taken between micro-batches would lose those already summed.
        stepped = trainer.global_step > self.step_at_start
        if self.received is not None and stepped and not trainer.should_stop:
            # beside last.ckpt until fit has ended (Lightning may still write last.ckpt on its way out)
            trainer.save_checkpoint(self.path.with_suffix(".stopping"), weights_only=False)
            trainer.should_stop = True

    def keep_checkpoint(self) -> None:
        """After fit: the checkpoint of the step under way at the signal becomes last.ckpt."""
        self.path.with_suffix(".stopping").replace(self.path)

    def _restore(self):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def teardown(self, trainer, pl_module, stage):  # the end of fit, whether it ended well or not
        self._restore()


class ContinuedCSVLogger(CSVLogger):
    """Lightning's CSV logger (<run dir>/metrics.csv) that, on a resume from step S, keeps the rows the
    interrupted run logged before S (those after it are logged again) instead of starting the file
    anew: the file ends as the uninterrupted run's would."""

    def __init__(self, run_dir: Path, resume_step: int | None = None):
        super().__init__(run_dir, name="", version="")
        path, self._kept = Path(run_dir) / "metrics.csv", []
        if resume_step is not None and path.is_file():
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
            self._kept = [{k: v for k, v in row.items() if v != ""} for row in rows
                          if str(row.get("step", "")).isdigit() and int(row["step"]) < resume_step]

    @property
    def experiment(self):
        writer = super().experiment  # created on first use: it removes the old metrics.csv
        if self._kept:
            writer.metrics[:0], self._kept = self._kept, []  # written back with the first new rows
        return writer


def read_checkpoint(path: str | Path, hint: str = "pass checkpoint=<run dir>/checkpoints/last.ckpt") -> dict:
    """Load an ssl-zoo checkpoint (weights_only: no code runs from the file), its config brought up to
    date; one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; {hint}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path} is not a readable checkpoint ({reason[:120]}); pass a last.ckpt written by ssl-zoo train") from None
    if not isinstance(ckpt, dict) or CONFIG_KEY not in ckpt or "state_dict" not in ckpt:
        raise UserError(f"{path} is not an ssl-zoo checkpoint (no run config inside); pass a last.ckpt written by ssl-zoo train")
    if ckpt.get(FORMAT_KEY, 1) > FORMAT:
        raise UserError(f"{path} was written by a newer ssl-zoo (checkpoint format {ckpt[FORMAT_KEY]}, this one reads "
                        f"up to {FORMAT}); upgrade ssl-zoo (pip install -U ssl-zoo)")
    if ckpt.get(FORMAT_KEY, 1) < FORMAT:
        ckpt[CONFIG_KEY] = upgrade(ckpt[CONFIG_KEY])
    return ckpt


def pick_device(name: str = "auto") -> torch.device:
    """`auto`: the GPU when there is one, else the CPU; otherwise the device named (cpu, cuda:1, ...)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise BadValue("device", f"device={name} is not a device; give device=auto, cpu or cuda[:<index>]") from None
    present = {"cpu": True, "cuda": torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count(),
               "mps": torch.backends.mps.is_available()}
    if not present.get(device.type, False):
        raise BadValue("device", f"device={name}: no such device on this machine ({torch.cuda.device_count()} CUDA "
                       "device(s)); give device=auto or device=cpu")
    return device


def method_from(ckpt: dict):
    """(method with the checkpoint's weights and state, the run config it was trained with)."""
    cfg = OmegaConf.create(ckpt[CONFIG_KEY])
    method = build_method(cfg)
    method.load_state_dict({k: v for k, v in ckpt["state_dict"].items() if not k.startswith(HEADS_LEFT_BEHIND)})
    method.on_load_checkpoint(ckpt)  # what else the model needs to run (text: its tokenizer)
    method.run_config, method.trained_steps = cfg, ckpt.get("global_step")  # what it was trained with, how long
    return method, cfg


def load_method(path: str | Path, device: str = "cpu") -> tuple:
    """(method of the checkpoint at path on `device` (auto: the GPU where there is one), its run config)."""
    method, cfg = method_from(read_checkpoint(path))
    return method.to(pick_device(device)), cfg


def checkpoint_for_resume(cfg, run_dir: Path) -> tuple[str | None, dict | None]:
    """(path, contents) of the checkpoint to resume from, read and checked before anything is built;
    (None, None) for a new run."""
    if cfg.resume in (None, False):
        return None, None
    path = run_dir / "checkpoints" / "last.ckpt" if cfg.resume == "auto" else Path(cfg.resume)
    if cfg.resume == "auto" and not path.exists():
        print(f"resume=auto: no checkpoint at {path} yet, starting a new run")
        return None, None
    return str(path), read_checkpoint(path, hint="pass resume=auto or resume=<run dir>/checkpoints/last.ckpt")
