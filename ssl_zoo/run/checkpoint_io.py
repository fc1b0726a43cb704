"""Writing and finding a run's checkpoint: Lightning's writer made atomic, and the checkpoint a run resumes from."""

from pathlib import Path

import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

from ssl_zoo.atomic import atomic_write
from ssl_zoo.checkpoint import CONFIG_KEY, read_checkpoint
from ssl_zoo.errors import UserError
from ssl_zoo.run.folder import RunFolder


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, through atomic_write: never a half-written last.ckpt."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        atomic_write(path, lambda f: torch.save(checkpoint, f))


def check_new_run(resume, run_dir: str | Path) -> None:
    """resume=null (unset) does not start a new run over a folder that holds one (its checkpoint, its results)."""
    folder = RunFolder(run_dir)
    if resume is None and (held := next((p for p in (folder.last_checkpoint, folder.results) if p.is_file()), None)):
        raise UserError(f"{run_dir} holds a run already ({held.name}); continue it with resume=auto, start over in it with "
                        "resume=false, or give the new run another hydra.run.dir")


def checkpoint_for_resume(cfg, run_dir: Path) -> tuple[str | None, dict | None]:
    """(path, contents) of the checkpoint to resume from, read and checked before anything is built;
    (None, None) for a new run. resume=null (unset) does not start a new run over a folder holding one."""
    folder = RunFolder(run_dir)
    check_new_run(cfg.resume, run_dir)
    if cfg.resume in (None, False):
        return None, None
    path = folder.last_checkpoint if cfg.resume == "auto" else Path(cfg.resume)
    if cfg.resume == "auto" and not path.exists():
        print(f"resume=auto: no checkpoint at {path} yet, starting a new run")
        return None, None
    resumed = read_checkpoint(path, hint="pass resume=auto or resume=<run dir>/checkpoints/last.ckpt")
    was = ((resumed.get(CONFIG_KEY) or {}).get("method") or {}).get("name")
    if was != cfg.method.name:  # said before the data is built
        raise UserError(f"{path} is a checkpoint of method={was}, not method={cfg.method.name}; resume it with "
                        f"method={was}, or start a new run (another hydra.run.dir, or resume=false)")
    return str(path), resumed


# The settings a resumed run may change (prefixes of dotted keys): how long it trains, where and how it
# runs and logs, and what is measured after training. Every other setting is the run's: a resume with
# another value would train on with the checkpoint's state under a config that says otherwise.
MAY_CHANGE_ON_RESUME = ("trainer.max_steps", "trainer.max_epochs", "trainer.accelerator", "trainer.devices",
                        "trainer.num_nodes", "trainer.strategy", "trainer.precision", "trainer.enable_progress_bar",
                        "trainer.log_every_n_steps", "logger", "resume", "checkpoint_every_n_steps",
                        "knn_monitor_every_n_steps", "compile", "probe", "icl")


def flat(node, prefix: str = "") -> dict:
    """{dotted key: value} of the leaves of plain config data."""
    if not isinstance(node, dict) or not node:
        return {prefix.rstrip("."): node} if prefix else {}
    return {k: v for key, child in node.items() for k, v in flat(child, f"{prefix}{key}.").items()}


def changed_on_resume(resumed: dict, config: dict, path: str) -> list[dict]:
    """The settings a resume changes ({key, from, to}), after refusing in one line any that a resumed run
    may not change (MAY_CHANGE_ON_RESUME). A key the checkpoint's config lacks was added to ssl-zoo since:
    not a change."""
    old, new = flat(resumed.get(CONFIG_KEY) or {}), flat(config)
    changes = [{"key": k, "from": old[k], "to": v} for k, v in new.items() if k in old and old[k] != v and k != "resume"]
    refused = [c for c in changes if not any(c["key"] == p or c["key"].startswith(p + ".") for p in MAY_CHANGE_ON_RESUME)]
    if refused:
        shown = ", ".join(f"{c['key']}={c['to']} (the run's: {c['from']})" for c in refused)
        raise UserError(f"resuming {path} with other settings than it was trained with: {shown}; resume with the run's "
                        "own settings (only how long it trains, where it runs and what is measured after may change), "
                        "or start a new run (another hydra.run.dir, or resume=false)")
    return changes
