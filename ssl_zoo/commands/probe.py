"""`ssl-zoo probe`: the common probe of a saved run, on the data it was trained on or on other data
of its modality; of an encoder trained elsewhere (encoder=hf:DIR | torchvision:NAME | timm:NAME, see
commands/baselines.py); and the probe block that `ssl-zoo train` runs after fitting."""

from pathlib import Path

from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf, open_dict

from ssl_zoo.atomic import atomic_write
from ssl_zoo.build import build_datamodule, check_modalities, random_init, require_values
from ssl_zoo.checkpoint import load_method, pick_device
from ssl_zoo.commands.baselines import check_encoder, foreign_encoder
from ssl_zoo.errors import UserError
from ssl_zoo.eval.probe import ProbeConfig, probe_method
from ssl_zoo.report import summary
from ssl_zoo.results import NO_TRAINING, RESULTS_FILE, read_json, record, run_dir_of, write_json


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


def load_for_probe(cfg: DictConfig):
    """A saved run's method on cfg.device and the datamodule to read (cfg.data, or the run's own data),
    set up as the encoder was trained: (method, train config, run config, datamodule)."""
    require_values(cfg)
    if cfg.get("checkpoint") is None:
        raise UserError("give checkpoint=... (a saved run's last.ckpt), or encoder=hf:DIR / torchvision:NAME / timm:NAME "
                        "(an encoder trained elsewhere)")
    method, train_cfg = load_method(cfg.checkpoint, cfg.device)
    run_cfg = train_cfg.copy()
    if cfg.get("data") is not None:
        run_cfg.data = cfg.data
        with open_dict(run_cfg):  # other data is read with the settings the encoder was trained on
            for key in getattr(get_class(run_cfg.data._target_), "bound_to_encoder", ()):
                if key in train_cfg.data:
                    run_cfg.data[key] = train_cfg.data[key]
    run_cfg.probe = cfg.probe
    check_modalities(run_cfg)
    require_values(run_cfg)
    return method, train_cfg, run_cfg, build_datamodule(run_cfg, **method.data_settings())


def beside_run(checkpoint, train_cfg: DictConfig, run_cfg: DictConfig, stem: str, suffix: str) -> Path:
    """<run dir>/<stem><suffix> for the run's own data and task; <stem>_<data>[_<task>]<suffix> for others."""
    other = [run_cfg.data.name] if run_cfg.data.name != train_cfg.data.name else []
    if run_cfg.data.get("task") != train_cfg.data.get("task"):
        other.append(str(run_cfg.data.get("task")))
    return run_dir_of(checkpoint) / (f"{stem}_{'_'.join(other)}{suffix}" if other else f"{stem}{suffix}")


def probe(cfg: DictConfig) -> dict:
    """Re-probe a saved run: results go to <run dir>/results.json, and the probe settings to its config.yaml
    (results_<data>[_<task>].json for other data)."""
    method, train_cfg, run_cfg, datamodule = load_for_probe(cfg)
    block = probe_block(method, datamodule, run_cfg)
    if block is None:
        raise UserError(f"data '{run_cfg.data.name}' has no labelled probe task; pick data with one (data=...)")
    ckpt = Path(cfg.checkpoint)
    target = beside_run(ckpt, train_cfg, run_cfg, "results", ".json")
    # The run's own record: its train block still describes this encoder.
    existing = read_json(target) or read_json(run_dir_of(ckpt) / RESULTS_FILE)
    results = record(run_cfg, method, existing.get("train"), block, {**existing.get("extra", {}), "checkpoint": str(ckpt)})
    write_json(target, results)
    config = run_dir_of(ckpt) / "config.yaml"
    if target.name == RESULTS_FILE and config.exists():  # the run's own figures, measured again: its config says how
        written = OmegaConf.load(config)
        written.probe = OmegaConf.to_container(run_cfg.probe, resolve=True)
        atomic_write(config, OmegaConf.to_yaml(written))
    return {**results, "path": str(target)}


def probe_foreign(cfg: DictConfig) -> dict:
    """An encoder trained elsewhere, probed on cfg.data beside the same architecture with random
    weights; results to cfg.out (default outputs/baselines/<kind>-<name>-<data>-seed<seed>/results.json)."""
    if cfg.get("data") is None:
        raise UserError(f"encoder={cfg.encoder} needs the data to probe on: data=python_stdlib, shapes, spoken_words, ...")
    require_values(cfg)
    datamodule = build_datamodule(cfg)
    kind, name = check_encoder(cfg.encoder, cfg.weights, datamodule.modality, cfg.data.name)
    label = f"{kind}:{Path(name).name}"  # a folder's name, not its path
    datamodule.setup()
    splits = datamodule.probe_splits()
    if splits is None:
        raise UserError(f"data '{cfg.data.name}' has no labelled probe task; pick data with one (data=...)")
    device = pick_device(cfg.device)
    encoder = foreign_encoder(cfg.encoder, cfg.weights, datamodule, cfg.data, seed=cfg.seed).to(device)
    probe_cfg = probe_config(cfg)
    baseline = foreign_encoder(cfg.encoder, cfg.weights, datamodule, cfg.data, True, cfg.seed) if probe_cfg.random_init_baseline else None
    print(f"probing {label} on '{splits.task}' ({splits.num_classes} classes) ...")
    block = probe_method(encoder, splits, probe_cfg, random_init=baseline)
    if warning := block["chosen"].get("warning"):
        print(f"warning: {warning}")
    block["leak"] = datamodule.leak_check()
    results = {"method": label, "modality": encoder.modality, "objective": "baseline", "data": cfg.data.name, "model": label,
               "params": sum(p.numel() for p in encoder.parameters()), "seed": cfg.seed, "train": dict(NO_TRAINING), "probe": block,
               "extra": {"baseline": True, "encoder": str(cfg.encoder), "weights": cfg.weights}}
    folder = Path(cfg.out) if cfg.out else Path("outputs") / "baselines" / f"{kind}-{Path(name).name}-{cfg.data.name}-seed{cfg.seed}"
    target = write_json(folder / RESULTS_FILE, results)
    return {**results, "path": str(target)}


def run(cfg: DictConfig) -> dict:
    results = probe_foreign(cfg) if cfg.get("encoder") else probe(cfg)
    print(summary(results, Path(results["path"]).parent))
    return results
