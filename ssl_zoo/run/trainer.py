"""The Lightning Trainer of a run, and what a training run's own settings may be."""

from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from ssl_zoo.errors import UserError
from ssl_zoo.eval.icl import ICLConfig
from ssl_zoo.eval.probe import ProbeConfig
from ssl_zoo.run.checkpoint_io import AtomicCheckpointIO
from ssl_zoo.run.folder import RunFolder
from ssl_zoo.run.loggers import make_loggers
from ssl_zoo.settings import FLAG, Either, Range

# What a training run's own settings may be (the method, model and data declare theirs in their constructors;
# the trainer's are Lightning's, passed on as they are).
TRAINING = {
    "": {"checkpoint_every_n_steps": Range(1, whole=True), "knn_monitor_every_n_steps": Range(0, whole=True), "compile": FLAG},
    "trainer": {"max_steps": Range(-1, whole=True), "max_epochs": Range(-1, whole=True, nullable=True),
                "accumulate_grad_batches": Range(1, whole=True), "gradient_clip_val": Range(0, nullable=True),
                # a whole number of steps, or a fraction of an epoch (Lightning's two readings)
                "val_check_interval": Either((Range(1, whole=True), Range(0, 1, above=True, nullable=True)),
                                             "a whole number of steps at least 1, or a fraction of an epoch above 0 and at most 1")},
    "probe": ProbeConfig,
    "icl": ICLConfig,  # a GPT's in-context evaluation after training (icl=...)
}


def make_trainer(cfg: DictConfig, run_dir: Path, callbacks: list[Callback], resume_step: int | None = None) -> pl.Trainer:
    """Lightning's Trainer of cfg.trainer, with a CSV logger (metrics.csv, continued on a resume from
    resume_step) and logger='s choice beside it, and an atomically written checkpoints/last.ckpt refreshed every checkpoint_every_n_steps."""
    checkpointing = ModelCheckpoint(dirpath=RunFolder(run_dir).checkpoints, save_last=True, save_top_k=0,
                                    every_n_train_steps=cfg.checkpoint_every_n_steps, enable_version_counter=False)
    try:
        return pl.Trainer(
            **OmegaConf.to_container(cfg.trainer, resolve=True),
            default_root_dir=run_dir,
            logger=make_loggers(cfg, run_dir, resume_step),
            callbacks=[checkpointing, *callbacks],
            plugins=[AtomicCheckpointIO()],
            use_distributed_sampler=False,  # the datamodule shards by rank itself
        )
    except (MisconfigurationException, ModuleNotFoundError) as e:  # e.g. trainer=gpu on a machine without one
        raise UserError(f"the trainer settings do not fit this machine ({e}); try trainer=cpu") from None
    except (ValueError, TypeError) as e:  # e.g. trainer.precision=bf17
        raise UserError(f"a trainer setting is invalid: {e}; fix it on the command line (trainer.<name>=...)") from None
