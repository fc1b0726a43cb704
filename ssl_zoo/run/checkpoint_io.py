"""Writing and finding a run's checkpoint: Lightning's writer made atomic, and the checkpoint a run resumes from."""

from pathlib import Path

import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from ssl_zoo.atomic import atomic_write
from ssl_zoo.checkpoint import read_checkpoint
from ssl_zoo.run.folder import RunFolder


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, through atomic_write: never a half-written last.ckpt."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        atomic_write(path, lambda f: torch.save(checkpoint, f))


def checkpoint_for_resume(cfg, run_dir: Path) -> tuple[str | None, dict | None]:
    """(path, contents) of the checkpoint to resume from, read and checked before anything is built;
    (None, None) for a new run."""
    if cfg.resume in (None, False):
        return None, None
    path = RunFolder(run_dir).last_checkpoint if cfg.resume == "auto" else Path(cfg.resume)
    if cfg.resume == "auto" and not path.exists():
        print(f"resume=auto: no checkpoint at {path} yet, starting a new run")
        return None, None
    return str(path), read_checkpoint(path, hint="pass resume=auto or resume=<run dir>/checkpoints/last.ckpt")
