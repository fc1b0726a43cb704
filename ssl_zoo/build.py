"""From a config to objects: the datamodule (`data`), the encoder (`model`) fitted to it, and the
method (`method`) around the encoder. Every command builds through here."""

import copy

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import MissingMandatoryValue

from ssl_zoo.errors import BadValue, UserError, check_range, l2_grid_problem, patch_grid_problem


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
    """The resolved config as plain data, its numbers checked (check_settings); a mandatory value left
    unset (??? in conf/, e.g. data.path) is refused, naming it."""
    try:
        values = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as e:
        raise UserError(f"{e.full_key} has no value; set it on the command line ({e.full_key}=...)") from None
    check_settings(values)
    return values


# Every numeric setting a command reads, with its valid range: (low, high, whole, low excluded).
# Checked at start-up, before any data is built, so that a bad value costs one line and no wait.
SETTINGS = {
    "seed": (0, None, True, False), "checkpoint_every_n_steps": (1, None, True, False),
    "method.optim.lr": (0, None, False, True), "method.optim.weight_decay": (0, None, False, False),
    "method.optim.momentum": (0, 1, False, False), "method.optim.warmup": (0, None, False, False),
    "method.optim.min_lr_ratio": (0, 1, False, False), "method.temperature": (0, None, False, True),
    "method.mask_prob": (0, 1, False, True), "method.span": (1, None, True, False),
    "method.select_prob": (0, 1, False, True), "method.mask_frac": (0, 1, False, False),
    "method.random_frac": (0, 1, False, False), "method.tau_base": (0, 1, False, False),
    "method.decoder_layers": (1, None, True, False), "method.top_k": (1, None, True, False),
    "method.tau_end": (0, 1, False, False), "method.speech_mask_prob": (0, 1, False, True),
    "method.speech_span": (1, None, True, False), "method.image_mask_ratio": (0, 0.99, False, True),
    "method.image_block": (1, None, True, False), "method.head_hidden_dim": (1, None, True, False),
    "method.decoder_dim": (1, None, True, False), "model.patch_size": (1, None, True, False),
    "data.batch_size": (1, None, True, False), "data.num_workers": (0, None, True, False),
    "data.image_size": (1, None, True, False), "data.block_size": (1, None, True, False),
    "data.vocab_size": (8, None, True, False), "data.val_fraction": (0, 0.99, False, True),
    "data.probe_length": (1, None, True, False),
    "data.sample_rate": (1, None, True, False), "data.test_fraction": (0, 1, False, False),
    "trainer.max_steps": (-1, None, True, False),
    "trainer.max_epochs": (-1, None, True, False), "trainer.accumulate_grad_batches": (1, None, True, False),
    "probe.batch_size": (1, None, True, False), "probe.max_train": (1, None, True, False),
    "probe.val_fraction": (0, 0.99, False, True), "probe.steps": (1, None, True, False),
    "probe.knn_k": (1, None, True, False), "probe.knn_temperature": (0, None, False, True),
    "probe.finetune_steps": (0, None, True, False), "probe.finetune_lr": (0, None, False, True),
    "probe.finetune_batch_size": (1, None, True, False),
    "port": (1, 65535, True, False), "limits.max_prompt_chars": (1, None, True, False),
    "limits.max_new_tokens": (1, None, True, False), "limits.max_top_k": (1, None, True, False),
    "limits.max_concurrent": (1, None, True, False), "limits.max_body_bytes": (1, None, True, False),
    "max_points": (2, None, True, False), "perplexity": (0, None, False, True),
}


# Settings that name one of a few choices.
CHOICES = {"method.optim.name": ("adamw", "lars", "sgd"), "method.centre_positions": (True, False), "compile": (True, False),
           "probe.solver": ("lbfgs", "adamw"), "method.target_norm": (None, "instance", "layer")}


def _lookup(values: dict, key: str):
    """The value at a dotted key of plain config data, or _ABSENT."""
    for part in key.split("."):
        if not isinstance(values, dict) or part not in values:
            return _ABSENT
        values = values[part]
    return values


_ABSENT = object()


def _as_typed(value) -> str:
    """A config value as it is typed on the command line (true, null)."""
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def check_settings(values: dict) -> None:
    """Refuse a numeric setting outside its range (SETTINGS), or a choice not among CHOICES, in one
    line naming key, value and what it may be."""
    for key, (low, high, whole, above) in SETTINGS.items():
        if (value := _lookup(values, key)) is not _ABSENT:
            check_range(key, value, low, high, allow_none=key in NULLABLE, whole=whole, above=above)
    for key, choices in CHOICES.items():
        value = _lookup(values, key)
        # of the same type too: 1 == True in Python, and a flag takes true or false only
        if value is not _ABSENT and not any(value == c and type(value) is type(c) for c in choices):
            shown = _as_typed(value)
            if isinstance(value, str) and value.lower() in map(_as_typed, choices):
                shown = f"'{value}' (a string)"  # a quoted 'true', not the flag
            raise BadValue(key, f"{key}={shown} is not one of: {', '.join(map(_as_typed, choices))}")
    if _lookup(values, "trainer.max_steps") == 0:
        raise BadValue("trainer.max_steps", "trainer.max_steps=0 trains nothing; give a number of steps, or -1 to train by epochs")
    for key, low, allowed in (("probe.weight_decays", "at least 0", lambda v: v >= 0), ("probe.lrs", "above 0", lambda v: v > 0)):
        sweep = _lookup(values, key)
        numbers = isinstance(sweep, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in sweep)
        if sweep is not _ABSENT and not (sweep is None and key == "probe.weight_decays") and not (
                numbers and sweep and all(map(allowed, sweep))):
            raise BadValue(key, f"{key}={sweep} must be a non-empty list of numbers {low}, e.g. [0.0, 1.0e-4, 1.0e-3]")
    probe = values.get("probe") or {}
    if "l2_low" in probe and probe.get("weight_decays") is None and (
            problem := l2_grid_problem(probe["l2_low"], probe.get("l2_high", 1.0), probe.get("l2_points", 7))):
        raise BadValue(problem.split("=", 1)[0], problem)  # the key the line starts with
    method = values.get("method") or {}
    if "mask_frac" in method and "random_frac" in method and method["mask_frac"] + method["random_frac"] > 1:
        raise BadValue("method.random_frac", f"method.mask_frac={method['mask_frac']} + method.random_frac="
                       f"{method['random_frac']} is more than 1 (the shares of the selected tokens masked and made random)")
    if (ratio := _lookup(values, "method.mask_ratio")) is not _ABSENT:  # an open interval: 1 would hide every patch
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio < 1:
            raise BadValue("method.mask_ratio", f"method.mask_ratio={ratio} is out of range; it must be a number above 0 and "
                           "below 1 (MAE: 0.75)")
    model = values.get("model") or {}
    if isinstance(model.get("patch_size"), int) and isinstance(model.get("image_size"), int) and (
            problem := patch_grid_problem(model["image_size"], model["patch_size"])):
        raise BadValue("model.patch_size", problem)
    if isinstance(top_k := method.get("top_k"), int) and isinstance(n_layer := model.get("n_layer"), int) and top_k > n_layer:
        raise BadValue("method.top_k", f"method.top_k={top_k} is more than the model's {n_layer} layers; set "
                       f"method.top_k=1..{n_layer} (the teacher's top layers that give the targets)")
    trainer = values.get("trainer") or {}
    if trainer.get("max_steps") == -1 and trainer.get("max_epochs", -1) in (-1, None):
        raise BadValue("trainer.max_steps", "trainer.max_steps=-1 with trainer.max_epochs=-1 never ends; give "
                       "trainer.max_steps=N, or trainer.max_epochs=N to train by epochs")


NULLABLE = {"trainer.max_epochs", "probe.max_train", "probe.steps", "method.temperature", "data.vocab_size", "data.block_size", "data.image_size"}


def check_modalities(cfg: DictConfig) -> None:
    """The method, the data and the encoder agree on the modality, and data2vec's centred text targets
    get batches of two sequences or more."""
    method, data, model = (get_class(cfg[group]._target_) for group in ("method", "data", "model"))
    if method.modality != data.modality:
        raise UserError(
            f"method '{cfg.method.name}' is for {method.modality} but data '{cfg.data.name}' is {data.modality}; "
            f"pick a {method.modality} dataset (data=...) or another method"
        )
    reads = getattr(model, "reads", (data.modality,))
    if data.modality not in reads:
        fix = "model=small_cnn, resnet18 or vit_tiny" if data.modality == "image" else "model=transformer_tiny"
        raise UserError(f"model '{cfg.model.name}' reads {' or '.join(reads)}, but data '{cfg.data.name}' is {data.modality}; "
                        f"pick a model for {data.modality} ({fix})")
    problem_of = getattr(method, "centred_batch_problem", None)  # data2vec's, read off the class the config names
    if problem_of and data.modality == "text" and cfg.method.get("centre_positions"):
        if isinstance(batch := cfg.data.get("batch_size"), int) and (problem := problem_of(batch)):
            raise UserError(problem)


def build_datamodule(cfg: DictConfig, **settings):
    """The datamodule of cfg.data; settings: what a trained model needs its data read with (see
    SSLMethod.data_settings)."""
    return _build(cfg.data, **settings)


def fit_to_data(cfg: DictConfig, datamodule) -> DictConfig:
    """Record in cfg.model and cfg.method what the data dictates (a text model's vocabulary size and
    context; a speech model's input size and frames, and its front end's sample rate and features),
    so that the stored config rebuilds the same method without the data. A new config: cfg is left as it is."""
    fitted = copy.deepcopy(cfg)
    with open_dict(fitted):
        fitted.model.update(datamodule.encoder_settings())
        fitted.method.update(datamodule.method_settings())
    return fitted


def build_method(cfg: DictConfig):
    """The method with a freshly initialised encoder (`model`), as the config describes it."""
    return _build(cfg.method, backbone=_build(cfg.model))


def random_init(cfg: DictConfig):
    """The method as it was initialised before pretraining (the same seed, the same draws): the
    probe's baseline to beat."""
    torch.manual_seed(cfg.seed)
    return build_method(cfg)


def for_training(cfg: DictConfig, **data_settings) -> tuple[DictConfig, object, object]:
    """(config, datamodule, method) of a training run: the data set up, the config with what the data
    dictates (fit_to_data: computed here, once), the encoder built from it and freshly initialised, the
    method told about its data. data_settings: what a resumed run's model needs its data read with
    (SSLMethod.data_settings)."""
    datamodule = build_datamodule(cfg, **data_settings)
    datamodule.setup()
    if cfg.probe.enabled:  # a probe with nothing to test (one class, no test items) is refused now, not after training
        datamodule.probe_splits()
    cfg = fit_to_data(cfg, datamodule)
    method = random_init(cfg)  # re-built the same way for the random-init probe
    method.use_data(datamodule.info())
    return cfg, datamodule, method
