"""The Lightning Trainer of a run, and what a training run's own settings may be."""

from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.accelerators import CPUAccelerator
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from ssl_zoo.errors import BadValue, UserError
from ssl_zoo.eval.icl import ICLConfig
from ssl_zoo.eval.probe import ProbeConfig
from ssl_zoo.run.checkpoint_io import AtomicCheckpointIO
from ssl_zoo.run.folder import RunFolder
from ssl_zoo.run.loggers import LOGGER_SETTINGS, make_loggers
from ssl_zoo.settings import FLAG, Either, Matches, Numbers, OneOf, Range, Refused

# What a training run's own settings may be (the method, model and data declare theirs in their constructors;
# the trainer's are Lightning's, passed on as they are).
TRAINING = {
    "": {"checkpoint_every_n_steps": Range(1, whole=True), "knn_monitor_every_n_steps": Range(0, whole=True), "compile": FLAG,
         "resume": Either((OneOf(("auto", False, None)), Matches(r".*\S.*", "")),
                          "auto (the run folder's last checkpoint, if any), false or null (a new run), or a checkpoint's path")},
    "trainer": {"max_steps": Range(-1, whole=True), "max_epochs": Range(-1, whole=True, nullable=True),
                "accumulate_grad_batches": Range(1, whole=True), "gradient_clip_val": Range(0, nullable=True),
                # a whole number of steps, or a fraction of an epoch (Lightning's two readings)
                "val_check_interval": Either((Range(1, whole=True), Range(0, 1, above=True, nullable=True)),
                                             "a whole number of steps at least 1, or a fraction of an epoch above 0 and at most 1"),
                "limit_train_batches": Either((Range(1, whole=True), Range(0, 1, above=True, nullable=True)),
                                              "a whole number of batches at least 1, or a fraction of an epoch above 0 and at most 1"),
                "log_every_n_steps": Range(1, whole=True), "check_val_every_n_epoch": Range(1, whole=True, nullable=True),
                "num_sanity_val_steps": Range(-1, whole=True, nullable=True),  # -1: the whole validation set
                "devices": Either((Range(1, whole=True), OneOf(("auto", -1)), Numbers(Range(0, whole=True)),
                                   Matches(r"\d+(,\d+)*,?", "")),
                                  "a number of devices at least 1, auto, -1 (all), or a list of device indices ([0, 1] or '0,1')"),
                "max_time": Matches(r"(?!0+:00:00:00$)\d+:\d\d:\d\d:\d\d", "a duration DD:HH:MM:SS above zero (e.g. 00:12:00:00)",
                                    nullable=True, mapping=True),
                "deterministic": OneOf((True, False, "warn", None)), "enable_progress_bar": OneOf((True, False, None)),
                "enable_model_summary": OneOf((True, False, None)), "benchmark": OneOf((True, False, None)),
                "inference_mode": FLAG, "detect_anomaly": FLAG, "min_steps": Range(-1, whole=True, nullable=True),
                "min_epochs": Range(0, whole=True, nullable=True),
                "limit_val_batches": Either((Range(0, whole=True), Range(0, 1, nullable=True)),
                                            "a whole number of batches (0: no validation), or a fraction of the validation set"),
                # our methods compute in 32 bits or less (a 64-bit run would need float64 data)
                "precision": OneOf(("auto", "32-true", "32", 32, "bf16-mixed", "bf16", "16-mixed", "16", 16,
                                    "transformer-engine", "transformer-engine-float16")),  # *-true: batches stay float32
                "overfit_batches": Either((Range(0, whole=True), Range(0, 1)), "a whole number of batches, or a fraction of an epoch (0 to 1)"),
                "profiler": OneOf(("simple", "advanced", "pytorch", None)), "gradient_clip_algorithm": OneOf(("norm", "value", None)),
                **{key: Refused(instead) for key, instead in (
                    ("default_root_dir", "the run folder is hydra.run.dir=..."), ("logger", "choose one with logger=..."),
                    ("callbacks", "ssl-zoo's callbacks checkpoint, record and stop runs"), ("plugins", "checkpoints are written atomically"),
                    ("enable_checkpointing", "ssl-zoo keeps checkpoints/last.ckpt; checkpoint_every_n_steps=N sets how often"),
                    ("use_distributed_sampler", "the data is split between processes by ssl-zoo's datamodules"),
                    ("barebones", "the run's record, checkpoints and metrics.csv need Lightning's loggers and callbacks"))}},
    "probe": ProbeConfig,
    "logger": LOGGER_SETTINGS,
    "icl": ICLConfig,  # a GPT's in-context evaluation after training (icl=...)
}


MACHINE_WORDS = ("gpu", "cuda", "backend", "accelerator", "device", "xla", "tpu", "mps", "nccl", "strategy")


def make_trainer(cfg: DictConfig, run_dir: Path, callbacks: list[Callback], resume_step: int | None = None) -> pl.Trainer:
    """Lightning's Trainer of cfg.trainer, with a CSV logger (metrics.csv, continued on a resume from
    resume_step) and logger='s choice beside it, and an atomically written checkpoints/last.ckpt refreshed every checkpoint_every_n_steps."""
    checkpointing = ModelCheckpoint(dirpath=RunFolder(run_dir).checkpoints, save_last=True, save_top_k=0,
                                    every_n_train_steps=cfg.checkpoint_every_n_steps, enable_version_counter=False)
    try:
        trainer = pl.Trainer(
            **OmegaConf.to_container(cfg.trainer, resolve=True),
            default_root_dir=run_dir,
            logger=make_loggers(cfg, run_dir, resume_step),
            callbacks=[checkpointing, *callbacks],
            plugins=[AtomicCheckpointIO()],
            use_distributed_sampler=False,  # the datamodule shards by rank itself
        )
    except (MisconfigurationException, ModuleNotFoundError) as e:
        said = " ".join(str(e).split())
        if any(word in said.lower() for word in MACHINE_WORDS):  # e.g. trainer=gpu on a machine without one
            raise UserError(f"the trainer settings do not fit this machine ({said}); run on its CPU: trainer=cpu, or "
                            "trainer.accelerator=cpu where the command line sets trainer.accelerator") from None
        raise UserError(f"Lightning refused the trainer settings: {said}; fix the trainer.<name> it names") from None
    except (ValueError, TypeError) as e:  # e.g. trainer.precision=bf17
        raise UserError(f"a trainer setting is invalid: {e}; fix it on the command line (trainer.<name>=...)") from None
    if cfg.trainer.get("sync_batchnorm") and isinstance(trainer.accelerator, CPUAccelerator):  # torch's SyncBatchNorm is for GPUs only
        raise BadValue("trainer.sync_batchnorm", "trainer.sync_batchnorm=true needs GPUs, and this run is on the CPU; "
                       "give trainer.sync_batchnorm=false (or trainer=cpu)")
    return trainer
