"""`ssl-zoo train` as a Python function: pretrain a method on its data with the Lightning Trainer, save
checkpoints/last.ckpt, probe the encoder (and score a GPT in context), write results.json."""

import sys
import warnings
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities.model_helpers import is_overridden

from ssl_zoo import build
from ssl_zoo.atomic import atomic_write
from ssl_zoo.checkpoint import method_from
from ssl_zoo.errors import UserError
from ssl_zoo.eval.icl import ICLConfig, evaluate_gpt
from ssl_zoo.report import icl_table
from ssl_zoo.results import read_json, record, write_json
from ssl_zoo.run.checkpoint_io import changed_on_resume, checkpoint_for_resume
from ssl_zoo.run.folder import RunFolder
from ssl_zoo.run.loggers import check_loggers
from ssl_zoo.run.precision import settle_precision
from ssl_zoo.run.probe import knn_monitor, probe_block
from ssl_zoo.run.record import RunRecord
from ssl_zoo.run.signals import RunInterrupted, StopOnSignal
from ssl_zoo.run.trainer import TRAINING, make_trainer

# Lightning advice that does not apply here: in-memory datasets are batched without workers, and
# Hydra has written its .hydra/ folder into the run dir before the CSV logger looks at it.
for message in (".*does not have many workers.*", ".*Experiment logs directory .* exists and is not empty.*", ".*LeafSpec.*",
                ".*module\\(s\\) in eval mode at the start of training.*"):  # the last: a teacher, on purpose
    warnings.filterwarnings("ignore", message=message)


def fit(trainer: pl.Trainer, method, datamodule, ckpt_path: str | None) -> None:
    """trainer.fit, from the checkpoint when resuming; a checkpoint this version cannot resume is one line."""
    try:
        trainer.fit(method, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except ValueError as e:
        if ckpt_path is None or "parameter group that doesn't match the size" not in str(e):
            raise
        # A checkpoint written before the method optimised all of its parameters (MAE's mask token, data2vec's
        # mask patch): its optimizer state has one parameter fewer than this version's.
        raise UserError(f"{ckpt_path} cannot be resumed: its optimizer state does not match this version's parameter groups "
                        "(it was written by an ssl-zoo that left a parameter out of the optimizer); start a new run "
                        "(another hydra.run.dir, or resume=false)") from None


def finished_run(cfg: DictConfig, run_dir: Path, resumed: dict) -> dict | None:
    """The results of a run that resume=auto finds finished (trained to max_steps, results.json
    written): said in one line, nothing rewritten. None when there is more to do."""
    results = read_json(RunFolder(run_dir).results)
    steps = resumed.get("global_step", 0)
    if not results or (results.get("train") or {}).get("steps") != steps or 0 < cfg.trainer.max_steps != steps:
        return None  # interrupted (in training or in the probe), or asked to train on
    print(f"the run in {run_dir} is finished ({steps} steps, results.json written): nothing to do; "
          f"give trainer.max_steps > {steps} to train it on")
    return results


def check_start(cfg: DictConfig) -> ICLConfig | None:
    """A run's settings, checked before anything is built (each job of a sweep too); returns its icl settings."""
    build.check_modalities(cfg)  # first: a method's settings may refer to data settings that only its modality has
    build.require_values(cfg, **TRAINING)
    check_loggers(cfg)  # their folders, keys and servers
    return in_context_settings(cfg)


def train(cfg: DictConfig, run_dir: str | Path, callbacks: list[Callback] = ()) -> dict | None:
    """Pretrain, save checkpoints/last.ckpt, probe, write results.json. Returns the results (rank 0)."""
    run_dir = Path(run_dir)
    folder = RunFolder(run_dir)
    icl_settings = check_start(cfg)
    ckpt_path, resumed = checkpoint_for_resume(cfg, run_dir)
    if resumed and (finished := finished_run(cfg, run_dir, resumed)) is not None:
        return finished
    reads_as = method_from(resumed)[0].data_settings() if resumed else {}  # a resumed run reads its data as before
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    cfg, datamodule, method = build.for_training(cfg, **reads_as)  # the settings the data dictates, computed once
    if cfg.get("compile"):
        method.backbone.compile()  # in place: checkpoint keys stay the same
    cfg, chosen = settle_precision(cfg, method, datamodule)  # trainer.precision=auto: bf16 where it is faster here
    OmegaConf.set_readonly(cfg, True)  # the run's config, final: what every checkpoint and config.yaml keep
    values = build.require_values(cfg)
    changes = changed_on_resume(resumed, values, ckpt_path) if resumed else []  # before config.yaml is rewritten
    run_record = RunRecord(values, changes, resumed["global_step"] if resumed else 0)
    for line in build.doubtful(run_record.config):
        print(f"ssl-zoo: warning: {line}", file=sys.stderr)
    monitor = knn_monitor(cfg, datamodule)
    stopper = StopOnSignal(folder.last_checkpoint)
    trainer = make_trainer(cfg, run_dir, [run_record, stopper, *([monitor] if monitor else []), *callbacks],
                           resumed["global_step"] if resumed else None)
    if trainer.is_global_zero:
        atomic_write(folder.config, OmegaConf.to_yaml(cfg, resolve=True))
        device = type(trainer.accelerator).__name__.removesuffix("Accelerator").lower()
        print(f"training {cfg.method.name} on {cfg.data.name}: {trainer.num_devices} {device} device(s), precision {trainer.precision}")
    fit(trainer, method, datamodule, ckpt_path)
    if stopper.received:
        if trainer.is_global_zero:  # the one that wrote it
            stopper.keep_checkpoint()
        raise RunInterrupted(f"{stopper.received} at step {trainer.global_step}: checkpoint saved in {folder.checkpoints}; "
                             f"continue with the same command and resume=auto hydra.run.dir={run_dir}")
    trainer.save_checkpoint(folder.last_checkpoint, weights_only=False)  # full: resumable
    val_metrics = {}
    if is_overridden("validation_step", method) and is_overridden("val_dataloader", datamodule):
        # the whole held-out set (none with trainer.limit_val_batches=0)
        val_metrics = next(iter(trainer.validate(method, datamodule=datamodule, verbose=False)), {})
    if not trainer.is_global_zero:
        return None
    steps = {"steps": trainer.global_step, "seconds": round(run_record.elapsed(), 1), "final_loss": run_record.final_loss}
    extra = {
        **{k.replace("/", "_"): float(v) for k, v in val_metrics.items()},  # val_loss, val_perplexity, ...
        **datamodule.baselines(),  # what counting alone scores (text: the unigram model)
        **method.report(),
        "world_size": trainer.world_size,
        "precision": trainer.precision,  # 32-true, bf16-mixed, ...: step times depend on it
        **chosen,  # precision_choice: how trainer.precision=auto chose
        "final_metrics": run_record.final_metrics,  # as training ended (a resumed run: as its checkpoint had them)
        **({"changed_on_resume": run_record.changed} if run_record.changed else {}),  # [{step, key, from, to}]
        **({"knn_monitor": monitor.report()} if monitor else {}),
    }
    probe = probe_block(method, datamodule, cfg) if cfg.probe.enabled else None
    results = record(cfg, method, steps, probe, extra, icl=in_context_scores(method, datamodule, icl_settings))
    write_json(folder.results, results)
    return results


def in_context_settings(cfg: DictConfig) -> ICLConfig | None:
    """The `icl` settings of a run (None without them), checked: a GPT's, with known tasks and labels."""
    if not cfg.get("icl"):
        return None
    if cfg.method.name != "gpt":
        raise UserError(f"icl=... scores a GPT in context after training, not {cfg.method.name}; drop the icl settings "
                        "or train method=gpt")
    icl = ICLConfig(**OmegaConf.to_container(cfg.icl, resolve=True))  # its keys checked by build.check_settings
    icl.check()
    return icl


def in_context_scores(method, datamodule, settings: ICLConfig | None) -> dict | None:
    """With `icl` set: a GPT's in-context scores after training (printed as a table too)."""
    if settings is None:
        return None
    print("in-context evaluation ...")
    icl = evaluate_gpt(method, settings, datamodule)
    print(icl_table(icl))
    return icl
