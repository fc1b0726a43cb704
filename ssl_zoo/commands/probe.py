"""`ssl-zoo probe`: the common probe of a saved run, on the data it was trained on or on other data
of its modality; of an encoder trained elsewhere (encoder=hf:DIR | torchvision:NAME | timm:NAME, see
eval/baselines.py)."""

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ssl_zoo.atomic import atomic_write, check_can_write
from ssl_zoo.build import build_datamodule, require_values
from ssl_zoo.device import pick_device
from ssl_zoo.errors import UserError
from ssl_zoo.eval.baselines import check_encoder, foreign_encoder
from ssl_zoo.eval.probe import ProbeConfig, probe_method
from ssl_zoo.report import summary
from ssl_zoo.results import NO_TRAINING, read_json, record, write_json
from ssl_zoo.run.folder import RESULTS, RunFolder
from ssl_zoo.run.probe import beside_run, load_for_probe, probe_block, probe_config
from ssl_zoo.settings import PATH_OR_NULL


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
    run = RunFolder.of_checkpoint(ckpt)
    existing = read_json(target) or read_json(run.results)
    results = record(run_cfg, method, existing.get("train"), block, {**existing.get("extra", {}), "checkpoint": str(ckpt)})
    write_json(target, results)
    config = run.config
    if target.name == RESULTS and config.exists():  # the run's own figures, measured again: its config says how
        written = OmegaConf.load(config)
        written.probe = OmegaConf.to_container(run_cfg.probe, resolve=True)
        atomic_write(config, OmegaConf.to_yaml(written))
    return {**results, "path": str(target)}


def probe_foreign(cfg: DictConfig) -> dict:
    """An encoder trained elsewhere, probed on cfg.data beside the same architecture with random
    weights; results to cfg.out (default outputs/baselines/<kind>-<name>-<data>-seed<seed>/results.json)."""
    if cfg.get("data") is None:
        raise UserError(f"encoder={cfg.encoder} needs the data to probe on: data=python_stdlib, shapes, spoken_words, ...")
    require_values(cfg, probe=ProbeConfig)
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
    target = write_json(RunFolder(folder).results, results)
    return {**results, "path": str(target)}


def run(cfg: DictConfig) -> dict:
    require_values(cfg, probe=ProbeConfig, **{"": {key: PATH_OR_NULL for key in ("checkpoint", "encoder", "weights", "out")}})
    if cfg.get("encoder") and cfg.get("checkpoint"):
        raise UserError("give checkpoint=<a run's last.ckpt> or encoder=<hf:DIR | torchvision:NAME | timm:NAME>, not both")
    for key in ("weights", "out"):
        if not cfg.get("encoder") and cfg.get(key) is not None:
            raise UserError(f"{key}= is read with encoder=...; a saved run is probed with its own weights and its results go "
                            f"beside its checkpoint (drop {key}=)")
    if cfg.get("encoder") and cfg.get("out"):
        check_can_write(Path(cfg.out), "out", folder=True)  # before the probe, not after
    results = probe_foreign(cfg) if cfg.get("encoder") else probe(cfg)
    print(summary(results, Path(results["path"]).parent))
    return results
