"""The probe step of a run (after training, and when a saved run is probed again): the probe settings, the
`probe` block of results.json with its leak check, and a saved run read back for probing."""

from pathlib import Path

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf, open_dict

from ssl_zoo.build import build_datamodule, check_modalities, random_init, require_values
from ssl_zoo.checkpoint import load_method
from ssl_zoo.errors import UserError
from ssl_zoo.eval.monitor import KNNMonitor
from ssl_zoo.eval.probe import ProbeConfig, probe_method
from ssl_zoo.run.folder import RunFolder


def probe_config(cfg: DictConfig) -> ProbeConfig:
    """The probe settings of a run's config (cfg.probe), as the evaluator takes them."""
    return ProbeConfig(**OmegaConf.to_container(cfg.probe, resolve=True))


def probe_block(method, datamodule, cfg: DictConfig) -> dict | None:
    """The `probe` block of results.json: the method (and the encoder it started from) probed on the
    datamodule's probe task; None when the data has no labels."""
    probe_cfg = probe_config(cfg)
    datamodule.setup()
    splits = datamodule.probe_splits()
    if splits is None:
        print(f"data '{cfg.data.name}' has no labelled probe task: no probe")
        return None
    baseline = random_init(cfg) if probe_cfg.random_init_baseline else None  # the very initialisation it started from
    print(f"probing on '{splits.task}' ({splits.num_classes} classes) ...")
    result = probe_method(method, splits, probe_cfg, random_init=baseline)
    if warning := result["chosen"].get("warning"):
        print(f"warning: {warning}")
    result["leak"] = leak = datamodule.leak_check()
    if leak["in_pretraining"]:
        print(f"warning: {leak['in_pretraining']} of the probe's {leak['test_items']} test {leak['unit']} occur in what "
              f"data '{cfg.data.name}' pretrains on: its test figures are not on unseen data")
    return result


def load_for_probe(cfg: DictConfig, **own):
    """A saved run's method on cfg.device and the datamodule to read (cfg.data, or the run's own data),
    set up as the encoder was trained: (method, train config, run config, datamodule). own: what the
    command's other settings may be (build.require_values)."""
    require_values(cfg, probe=ProbeConfig, **own)
    if cfg.get("checkpoint") is None:
        raise UserError("give checkpoint=... (a saved run's last.ckpt), or encoder=hf:DIR / torchvision:NAME / timm:NAME "
                        "(an encoder trained elsewhere)")
    method, train_cfg = load_method(cfg.checkpoint, cfg.device)
    run_cfg = train_cfg.copy()
    if cfg.get("data") is not None:
        run_cfg.data = cfg.data
        trained, given = (OmegaConf.to_container(data, resolve=True) for data in (train_cfg.data, cfg.data))
        with open_dict(run_cfg):  # other data is read with the settings the encoder was trained on
            for key in getattr(get_class(run_cfg.data._target_), "bound_to_encoder", ()):
                if key in trained:
                    if key in given and given[key] != trained[key]:
                        print(f"data.{key} is read as the encoder was trained: {trained[key]} (not {given[key]})")
                    run_cfg.data[key] = train_cfg.data[key]
    run_cfg.probe = cfg.probe
    if getattr(get_class(run_cfg.data._target_), "probe_task", None) == "none":  # before the text is read
        raise UserError(f"data '{run_cfg.data.name}' has no labels (no probe task); pick data with one, e.g. data=python_stdlib")
    check_modalities(run_cfg)
    require_values(run_cfg, probe=ProbeConfig)
    return method, train_cfg, run_cfg, build_datamodule(run_cfg, **method.data_settings())


def beside_run(checkpoint, train_cfg: DictConfig, run_cfg: DictConfig, stem: str, suffix: str) -> Path:
    """<run dir>/<stem><suffix> for the run's own data and task; <stem>_<data>[_<task>]<suffix> for others."""
    other = [run_cfg.data.name] if run_cfg.data.name != train_cfg.data.name else []
    if run_cfg.data.get("task") != train_cfg.data.get("task"):
        other.append(str(run_cfg.data.get("task")))
    return RunFolder.of_checkpoint(checkpoint).beside(f"{stem}_{'_'.join(other)}{suffix}" if other else f"{stem}{suffix}")


def knn_monitor(cfg: DictConfig, datamodule) -> KNNMonitor | None:
    """With knn_monitor_every_n_steps > 0 and a probe task: lightly's kNN monitor during pretraining."""
    every = cfg.get("knn_monitor_every_n_steps") or 0
    if not every:
        return None
    datamodule.setup()
    splits = datamodule.probe_splits()
    if splits is None:
        print(f"data '{cfg.data.name}' has no probe task: no kNN monitor")
        return None
    return KNNMonitor(splits, probe_config(cfg), every)
