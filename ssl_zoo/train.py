"""Pretrain a method on a dataset with the Lightning Trainer, then probe it: the `train` and `probe`
commands as Python functions (the CLI and the notebooks call these)."""

import json
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import MissingMandatoryValue
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.plugins.io import TorchCheckpointIO
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from pytorch_lightning.utilities.model_helpers import is_overridden

from ssl_zoo.data.tokenizer import TextTokenizer
from ssl_zoo.errors import UserError
from ssl_zoo.eval.probe import ProbeConfig, probe_method
from ssl_zoo.results import RESULTS_FILE, run_dir_of, write_json_atomic

CONFIG_KEY = "ssl_zoo_config"  # where a checkpoint keeps the resolved run config
TOKENIZER_KEY = "ssl_zoo_tokenizer"  # and, for text, its tokenizer (JSON text)

# Lightning advice that does not apply here: in-memory datasets are batched without workers, and
# Hydra has written its .hydra/ folder into the run dir before the CSV logger looks at it.
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message=".*Experiment logs directory .* exists and is not empty.*")
warnings.filterwarnings("ignore", message=".*LeafSpec.*")


def _build(node: DictConfig, **kwargs):
    """Instantiate a config group node; its `name` is a label for results, not an argument."""
    spec = OmegaConf.to_container(node, resolve=True)
    spec.pop("name", None)
    try:
        return instantiate(spec, _convert_="all", **kwargs)
    except InstantiationException as e:  # Hydra wraps what the constructor raised: a UserError stays one line
        if isinstance(e.__cause__, UserError):
            raise e.__cause__ from None
        raise


def require_values(cfg: DictConfig) -> dict:
    """The resolved config as plain data; a mandatory value left unset (??? in conf/, e.g. data.path)
    is refused, naming it."""
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as e:
        raise UserError(f"{e.full_key} has no value; set it on the command line ({e.full_key}=...)") from None


def check_modalities(cfg: DictConfig) -> None:
    method, data = get_class(cfg.method._target_), get_class(cfg.data._target_)
    if method.modality != data.modality:
        raise UserError(
            f"method '{cfg.method.name}' is for {method.modality} but data '{cfg.data.name}' is {data.modality}; "
            f"pick a {method.modality} dataset (data=...) or another method"
        )


def build_datamodule(cfg: DictConfig):
    return _build(cfg.data)


def build_method(cfg: DictConfig):
    """The method with a freshly initialised encoder (`model`), as the config describes it. The method
    decides what only it can (a transformer's causal flag); the data has already written what the
    encoder needs to read it into cfg.model (see `fit_encoder_to_data`)."""
    settings = getattr(get_class(cfg.method._target_), "encoder_settings", {})
    return _build(cfg.method, backbone=_build(cfg.model, **settings))


def fit_encoder_to_data(cfg: DictConfig, datamodule) -> None:
    """Record in cfg.model what the data dictates (a text model's vocabulary size and context), so
    that the stored config rebuilds the same encoder without the data."""
    settings = datamodule.encoder_settings()
    if settings:
        with open_dict(cfg):
            cfg.model.update(settings)


def count_parameters(method) -> int:
    encoder = getattr(method, "backbone", method)
    return sum(p.numel() for p in encoder.parameters())


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write the checkpoint next to its destination, then rename: never a half-written last.ckpt."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(checkpoint, tmp)
        tmp.replace(path)


class RunRecord(Callback):
    """Keeps the resolved config in every checkpoint and adds up training time across resumes."""

    def __init__(self, config: dict):
        self.config, self.seconds, self._start = config, 0.0, None

    def on_train_start(self, trainer, pl_module):
        self._start = time.perf_counter()

    def elapsed(self) -> float:
        return self.seconds + (time.perf_counter() - self._start if self._start else 0.0)

    def on_train_end(self, trainer, pl_module):
        self.seconds, self._start = self.elapsed(), None

    def state_dict(self):
        return {"seconds": self.elapsed()}

    def load_state_dict(self, state):
        self.seconds = state["seconds"]

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        checkpoint[CONFIG_KEY] = self.config
        tokenizer = getattr(trainer.datamodule, "tokenizer", None)
        if tokenizer is not None:
            checkpoint[TOKENIZER_KEY] = tokenizer.to_str()


def make_trainer(cfg: DictConfig, **kwargs) -> pl.Trainer:
    try:
        return pl.Trainer(**OmegaConf.to_container(cfg.trainer, resolve=True), **kwargs)
    except (MisconfigurationException, ModuleNotFoundError) as e:  # e.g. trainer=gpu on a machine without one
        raise UserError(f"the trainer settings do not fit this machine ({e}); try trainer=cpu") from None
    except (ValueError, TypeError) as e:  # e.g. trainer.precision=bf17
        raise UserError(f"a trainer setting is invalid: {e}; fix it on the command line (trainer.<name>=...)") from None


def checkpoint_for_resume(cfg: DictConfig, run_dir: Path) -> tuple[str | None, dict]:
    """(path, contents) of the checkpoint to resume from, read and checked before training starts;
    (None, {}) for a new run."""
    if cfg.resume in (None, False):
        return None, {}
    path = run_dir / "checkpoints" / "last.ckpt" if cfg.resume == "auto" else Path(cfg.resume)
    if cfg.resume == "auto" and not path.exists():
        print(f"resume=auto: no checkpoint at {path} yet, starting a new run")
        return None, {}
    return str(path), read_checkpoint(path, hint="pass resume=auto or resume=<run dir>/checkpoints/last.ckpt")


def train(cfg: DictConfig, run_dir: str | Path, callbacks: list[Callback] = ()) -> dict | None:
    """Pretrain, save checkpoints/last.ckpt, probe, write results.json. Returns the results (rank 0)."""
    run_dir = Path(run_dir)
    check_modalities(cfg)  # first: a method's settings may refer to data settings that only its modality has
    require_values(cfg)
    ckpt_path, ckpt = checkpoint_for_resume(cfg, run_dir)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = build_datamodule(cfg)
    if TOKENIZER_KEY in ckpt:
        datamodule.tokenizer = TextTokenizer.from_str(ckpt[TOKENIZER_KEY])  # a resumed run keeps its tokenizer
    fit_encoder_to_data(cfg, datamodule)
    resolved = require_values(cfg)
    torch.manual_seed(cfg.seed)  # the encoder's initialisation, rebuilt the same way for the random-init probe
    method = build_method(cfg)
    method.tokenizer = getattr(datamodule, "tokenizer", None)
    if cfg.get("compile"):
        method.backbone.compile()  # in place: checkpoint keys stay the same
    record = RunRecord(resolved)
    checkpointing = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        save_last=True,
        save_top_k=0,
        every_n_train_steps=cfg.checkpoint_every_n_steps,
        enable_version_counter=False,
    )
    trainer = make_trainer(
        cfg,
        default_root_dir=run_dir,
        logger=CSVLogger(run_dir, name="", version=""),
        callbacks=[checkpointing, record, *callbacks],
        plugins=[AtomicCheckpointIO()],
        use_distributed_sampler=False,  # the datamodule shards by rank itself
    )
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    trainer.fit(method, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    trainer.save_checkpoint(run_dir / "checkpoints" / "last.ckpt", weights_only=False)  # full: resumable
    loss = trainer.callback_metrics.get("train/loss")
    val_metrics = {}
    if is_overridden("validation_step", method) and is_overridden("val_dataloader", datamodule):
        [val_metrics] = trainer.validate(method, datamodule=datamodule, verbose=False)  # the whole held-out set
    if not trainer.is_global_zero:
        return None
    results = {
        "method": cfg.method.name,
        "modality": method.modality,
        "data": cfg.data.name,
        "model": cfg.model.name,
        "params": count_parameters(method),
        "seed": cfg.seed,
        "train": {
            "steps": trainer.global_step,
            "seconds": round(record.elapsed(), 1),
            "final_loss": None if loss is None else float(loss),
        },
        "probe": None,
        "extra": {
            **{k.replace("/", "_"): float(v) for k, v in val_metrics.items()},  # val_loss, val_perplexity, ...
            **method.report(datamodule),
            "world_size": trainer.world_size,
            "precision": trainer.precision,  # 32-true, bf16-mixed, ...: step times depend on it
            "final_metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
        },
    }
    if cfg.probe.enabled:
        results["probe"] = run_probe_block(method, datamodule, cfg)
    if cfg.get("icl"):
        results["icl"] = run_icl_block(method, cfg)
    write_json_atomic(run_dir / RESULTS_FILE, results)
    return results


def run_probe_block(method, datamodule, cfg: DictConfig) -> dict | None:
    probe_cfg = ProbeConfig(**OmegaConf.to_container(cfg.probe, resolve=True))
    datamodule.setup()
    splits = datamodule.probe_splits()
    if splits is None:
        print(f"data '{cfg.data.name}' has no labelled probe task: no probe")
        return None
    random_init = None
    if probe_cfg.random_init_baseline:
        torch.manual_seed(cfg.seed)  # the very initialisation the pretrained encoder started from (see train)
        random_init = build_method(cfg)
    print(f"probing on '{splits.task}' ({splits.num_classes} classes) ...")
    return probe_method(method, splits, probe_cfg, random_init=random_init)


def run_icl_block(method, cfg: DictConfig) -> dict:
    from ssl_zoo.eval.icl import GPTScorer, ICLConfig, evaluate_icl, icl_table

    if method.name != "gpt":
        raise UserError(f"in-context evaluation (icl=...) needs a gpt model, not {method.name}; drop the icl settings")
    print("in-context evaluation ...")
    was_training = method.training
    method.eval()
    scores = evaluate_icl(GPTScorer(method), ICLConfig(**OmegaConf.to_container(cfg.icl, resolve=True)))
    method.train(was_training)
    print(icl_table(scores))
    return scores


# --- checkpoints --------------------------------------------------------------------------------
def read_checkpoint(path: str | Path, hint: str = "pass checkpoint=<run dir>/checkpoints/last.ckpt") -> dict:
    """Load an ssl-zoo checkpoint (weights_only: no code runs from the file); one-line errors."""
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
    return ckpt


def pick_device(name: str = "auto") -> torch.device:
    """`auto`: the GPU when there is one, else the CPU; otherwise the device named (cpu, cuda:1, ...)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def load_method(path: str | Path):
    """(method with the checkpoint's weights, the run config it was trained with)."""
    ckpt = read_checkpoint(path)
    cfg = OmegaConf.create(ckpt[CONFIG_KEY])
    method = build_method(cfg)
    state = {k: v for k, v in ckpt["state_dict"].items() if not k.startswith(("online_head.", "online_acc."))}
    method.load_state_dict(state)
    method.tokenizer = TextTokenizer.from_str(ckpt[TOKENIZER_KEY]) if TOKENIZER_KEY in ckpt else None  # text
    method.run_config, method.trained_steps = cfg, ckpt.get("global_step")  # what it was trained with, how long
    return method, cfg


def load_for_probe(cfg: DictConfig):
    """A saved run's method on cfg.device and the datamodule to read (cfg.data, or the run's own data),
    set up as the encoder was trained: (method, train config, run config, datamodule)."""
    require_values(cfg)
    method, train_cfg = load_method(cfg.checkpoint)
    run_cfg = train_cfg.copy()
    if cfg.get("data") is not None:
        run_cfg.data = cfg.data
        with open_dict(run_cfg):
            for key in getattr(get_class(run_cfg.data._target_), "bound_to_encoder", ()):
                if key in train_cfg.data:
                    run_cfg.data[key] = train_cfg.data[key]
    run_cfg.probe = cfg.probe
    check_modalities(run_cfg)
    require_values(run_cfg)
    method.to(pick_device(cfg.device))
    datamodule = build_datamodule(run_cfg)
    if method.tokenizer is not None:
        datamodule.tokenizer = method.tokenizer  # the text is read with the tokenizer the model learned
    return method, train_cfg, run_cfg, datamodule


def beside_run(checkpoint, train_cfg: DictConfig, run_cfg: DictConfig, stem: str, suffix: str) -> Path:
    """<run dir>/<stem><suffix> for the run's own data and task; <stem>_<data>[_<task>]<suffix> for others."""
    other = [run_cfg.data.name] if run_cfg.data.name != train_cfg.data.name else []
    if run_cfg.data.get("task") != train_cfg.data.get("task"):
        other.append(str(run_cfg.data.get("task")))
    return run_dir_of(checkpoint) / (f"{stem}_{'_'.join(other)}{suffix}" if other else f"{stem}{suffix}")


def probe(cfg: DictConfig) -> dict:
    """Re-probe a saved run: results go to <run dir>/results.json (results_<data>[_<task>].json for others)."""
    method, train_cfg, run_cfg, datamodule = load_for_probe(cfg)
    block = run_probe_block(method, datamodule, run_cfg)
    if block is None:
        raise UserError(f"data '{run_cfg.data.name}' has no labelled probe task; pick data with one (data=...)")
    ckpt = Path(cfg.checkpoint)
    target = beside_run(ckpt, train_cfg, run_cfg, "results", ".json")
    existing = {}  # the run's own record: its train block still describes this encoder
    for previous in (target, run_dir_of(ckpt) / RESULTS_FILE):
        try:
            existing = json.loads(previous.read_text())
            break
        except (OSError, ValueError):
            continue
    results = {
        "method": train_cfg.method.name,
        "modality": method.modality,
        "data": run_cfg.data.name,
        "model": train_cfg.model.name,
        "params": count_parameters(method),
        "seed": train_cfg.seed,
        "train": existing.get("train", {"steps": None, "seconds": None, "final_loss": None}),
        "probe": block,
        "extra": {**existing.get("extra", {}), "checkpoint": str(ckpt)},
    }
    write_json_atomic(target, results)
    results["path"] = str(target)
    return results


def embed_plot(cfg: DictConfig) -> Path:
    """2-D t-SNE maps of the probe features of a saved run beside those of its random-init encoder,
    coloured by label: <run dir>/embeddings.png (embeddings_<data>[_<task>].png for other data)."""
    from sklearn.manifold import TSNE

    from ssl_zoo.eval.probe import extract_features, standardise, subsample
    from ssl_zoo.plots import embedding_maps

    if cfg.split not in ("train", "test"):
        raise UserError(f"split must be train or test, got '{cfg.split}'")
    method, train_cfg, run_cfg, datamodule = load_for_probe(cfg)
    datamodule.setup()
    splits = datamodule.probe_splits()
    if splits is None:
        raise UserError(f"data '{run_cfg.data.name}' has no labels to colour the map by; pick data with a probe task (data=...)")
    dataset = subsample(splits.test if cfg.split == "test" else splits.train, cfg.max_points, cfg.seed)
    torch.manual_seed(train_cfg.seed)  # the initialisation the encoder started from
    random_init = build_method(run_cfg).to(method.device)
    maps = {}
    for name, encoder in (("pretrained", method), ("random init", random_init)):
        encoder.eval()
        features, labels = extract_features(encoder.embed, dataset, cfg.probe.batch_size, method.device)
        [features] = standardise(features.flatten(1))  # a layer mix's (N, L, D): every layer side by side
        perplexity = min(cfg.perplexity, (len(features) - 1) / 3)
        points = TSNE(2, perplexity=perplexity, init="pca", random_state=cfg.seed).fit_transform(features.numpy())
        maps[f"{train_cfg.method.name}: {name}"] = (points, labels.numpy())
        print(f"t-SNE of {len(features)} {cfg.split} items, {name} encoder: done")
    names = getattr(datamodule, "classes", None)  # label names where the data has them
    classes = list(names) if isinstance(names, (list, tuple)) else list(range(splits.num_classes))
    title = f"{train_cfg.method.name} ({train_cfg.model.name}) on {run_cfg.data.name}: probe task '{splits.task}', t-SNE"
    path = Path(cfg.out) if cfg.get("out") else beside_run(cfg.checkpoint, train_cfg, run_cfg, "embeddings", ".png")
    return embedding_maps(maps, [str(c) for c in classes], title, path)
