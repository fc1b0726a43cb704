"""From a config to objects: the datamodule (`data`), the encoder (`model`) fitted to it, and the
method (`method`) around the encoder. Every command builds through here."""

import copy

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import MissingMandatoryValue

from ssl_zoo import settings
from ssl_zoo.errors import BadValue, UserError, l2_grid_problem, layer_problem, patch_grid_problem
from ssl_zoo.settings import Range


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


def require_values(cfg: DictConfig, **own) -> dict:
    """The resolved config as plain data, its settings checked (check_settings); a mandatory value left
    unset (??? in conf/, e.g. data.path) is refused, naming it. own: what the command's nodes that no
    component builds may be ({"": its top-level keys, "trainer": ..., "probe": ProbeConfig}; a tuple of
    declarations for a node several declare)."""
    try:
        values = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as e:
        raise UserError(f"{e.full_key} has no value; set it on the command line ({e.full_key}=...)") from None
    check_settings(values, own)
    return values


MAX_STEPS = 2**53  # steps and epochs counted in a float stay exact below this; int64 and every schedule hold it
COMMON = {"seed": Range(0, 2**32 - 1, whole=True)}  # the one setting every command has (numpy takes 0 .. 2**32 - 1)


def check_settings(values: dict, own: dict | None = None) -> None:
    """Refuse, in one line naming key, value and what it may be, a setting that is not what its component
    declares (settings.py): every node that names its class (`_target_`: method, model, data, views, ...)
    against that class's declarations, the command's other nodes against `own`; then the settings that
    must agree with each other (check_relations). Before any data is built: a bad value costs no wait."""
    settings.check("", values, COMMON)  # first: a node may take its seed from it (data.seed: ${seed})
    _check_built(values, "")
    for path, components in (own or {}).items():
        node = values if path == "" else values.get(path)
        if path and node is not None and not isinstance(node, dict):
            raise BadValue(path, f"{path}={settings.as_typed(node)} is a group of settings, not a value; set one of them "
                           f"({path}.<name>=...)")
        for component in components if isinstance(components, tuple) else (components,):
            if isinstance(node, dict) and path and isinstance(component, type):  # a node of one class: its keys only
                _check_keys(path, node, component)
            if isinstance(node, dict):
                settings.check(f"{path}." if path else "", node, component)
    check_relations(values)


def _check_built(node: dict, prefix: str) -> None:
    """Each node below `node` that names its class, against what the class declares (recursively)."""
    for key, child in node.items():
        if not isinstance(child, dict):
            continue
        if isinstance(target := child.get("_target_"), str):
            component = settings.find_class(target)  # None: one that does not exist (building it says so, naming the node)
            if component is not None:
                _check_keys(f"{prefix}{key}", child, component)
                settings.check(f"{prefix}{key}.", child, component)
        _check_built(child, f"{prefix}{key}.")


NOT_ARGUMENTS = {"_target_", "name", "_partial_", "_convert_", "_recursive_", "_args_"}  # read by Hydra, or a label


def _check_keys(path: str, node: dict, component) -> None:
    """A key that the node's class does not take (`+method.foo=1`) is refused naming the ones it does
    (instantiating would fail with a multi-line TypeError)."""
    takes = settings.accepted(component)
    if takes is None:
        return
    for key in node:
        if key not in takes and key not in NOT_ARGUMENTS:
            names = ", ".join(sorted(k for k in takes if k not in ("backbone", "cfg")))
            raise BadValue(f"{path}.{key}", f"{path}.{key} is not a setting of {path}" + (f"={node['name']}" if node.get("name") else "")
                           + f"; its settings are: {names}")


def check_relations(values: dict) -> None:
    """Settings that must agree with each other (each alone is in its range)."""
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
    check_method_relations(method)
    model = values.get("model") or {}
    if isinstance(model.get("patch_size"), int) and isinstance(model.get("image_size"), int) and (
            problem := patch_grid_problem(model["image_size"], model["patch_size"])):
        raise BadValue("model.patch_size", problem)
    if isinstance(top_k := method.get("top_k"), int) and isinstance(n_layer := model.get("n_layer"), int) and top_k > n_layer:
        raise BadValue("method.top_k", f"method.top_k={top_k} is more than the model's {n_layer} layers; set "
                       f"method.top_k=1..{n_layer} (the teacher's top layers that give the targets)")
    if "probe_layer" in method and isinstance(n_layer := model.get("n_layer"), int) and (
            problem := layer_problem(method["probe_layer"], n_layer, "method.probe_layer")):
        raise BadValue("method.probe_layer", problem)  # before the data is built (speech is synthesised)
    if isinstance(n_embd := model.get("n_embd"), int) and isinstance(n_head := model.get("n_head"), int) and n_embd % n_head:
        raise BadValue("model.n_head", f"model.n_head={n_head} does not divide model.n_embd={n_embd} (each head reads "
                       f"n_embd / n_head channels); pick a divisor, e.g. model.n_head={_divisor(n_embd, n_head)}")
    n_mels = _lookup(values, "data.features.n_mels")
    if isinstance(width := method.get("freq_mask_width"), int) and isinstance(n_mels, int) and width > n_mels:
        raise BadValue("method.freq_mask_width", f"method.freq_mask_width={width} is wider than the {n_mels} mel bins "
                       f"(data.features.n_mels); give 0..{n_mels}")
    trainer = values.get("trainer") or {}
    for key in ("max_steps", "max_epochs", "val_check_interval"):
        if isinstance(count := trainer.get(key), int) and count > MAX_STEPS:
            raise BadValue(f"trainer.{key}", f"trainer.{key}={count} is more than a run can count (2**53 = {MAX_STEPS:,}); "
                           f"give a smaller trainer.{key}")
    for unit in ("steps", "epochs"):
        if isinstance(least := trainer.get(f"min_{unit}"), int) and isinstance(most := trainer.get(f"max_{unit}"), int) \
                and 0 < most < least:
            raise BadValue(f"trainer.min_{unit}", f"trainer.min_{unit}={least} is more than trainer.max_{unit}={most}; the run "
                           f"stops at max_{unit}: give trainer.min_{unit} of at most {most}")
    if trainer.get("max_epochs") == 0:
        raise BadValue("trainer.max_epochs", "trainer.max_epochs=0 trains nothing; give a number of epochs, or "
                       "trainer.max_epochs=-1 to train by trainer.max_steps")
    if trainer.get("max_steps") == -1 and trainer.get("max_epochs", -1) in (-1, None):
        raise BadValue("trainer.max_steps", "trainer.max_steps=-1 with trainer.max_epochs=-1 never ends; give "
                       "trainer.max_steps=N, or trainer.max_epochs=N to train by epochs")
    check_data_relations(values)


def check_method_relations(method: dict) -> None:
    """A method's settings that must agree with each other: shares that hide something, views, heads, momenta."""
    for masked, other, what in (("mask_frac", "random_frac", "selected tokens masked and made random"),
                                ("zero_frac", "replace_frac", "masked frames zeroed and replaced by others")):
        if isinstance(a := method.get(masked), (int, float)) and isinstance(b := method.get(other), (int, float)) and a + b > 1:
            raise BadValue(f"method.{other}", f"method.{masked}={a} + method.{other}={b} is more than 1 (the shares of the {what})")
    for key in ("views", "view_a", "view_b"):
        if key in method and method[key] is None:
            raise BadValue(f"method.{key}", f"method.{key}=null leaves the method without the views it trains on; leave it out "
                           f"(the method's own), or change its settings (method.{key}.<name>=...)")
    if method.get("zero_frac") == 0 and method.get("replace_frac") == 0 and not method.get("freq_mask_width"):
        raise BadValue("method.zero_frac", "method.zero_frac=0 and method.replace_frac=0 (and no frequency mask) hide none of the "
                       "masked frames: the model would learn to copy its input; give method.zero_frac above 0 (the recipe: 0.8)")
    if method.get("mask_frac") == 0 and method.get("random_frac") == 0:  # BERT's selected tokens all kept as they are
        raise BadValue("method.mask_frac", "method.mask_frac=0 and method.random_frac=0 hide none of the selected tokens: the model "
                       "would learn to copy its input; give method.mask_frac above 0 (BERT's recipe: 0.8, random_frac 0.1)")
    if isinstance(dim := method.get("decoder_dim"), int) and isinstance(heads := method.get("decoder_heads"), int) and heads and dim % heads:
        raise BadValue("method.decoder_heads", f"method.decoder_heads={heads} does not divide method.decoder_dim={dim}; pick a "
                       f"divisor, e.g. method.decoder_heads={_divisor(dim, heads)}")
    if isinstance(start := method.get("tau_base"), (int, float)) and isinstance(end := method.get("tau_end"), (int, float)) and end < start:
        raise BadValue("method.tau_end", f"method.tau_end={end} is below method.tau_base={start}: the teacher's momentum "
                       f"rises from tau_base to tau_end; give tau_end of at least {start}")


def check_data_relations(values: dict) -> None:
    """Data settings that must agree with each other, with the probe or with the encoder."""
    data, probing = values.get("data") or {}, _lookup(values, "probe.enabled") is True
    model = values.get("model") or {}
    for node, group, key, base in ((data, "data", "classes", "cifar"), (model, "model", "depth", "resnet")):
        named = str(node.get("name", ""))  # cifar100, resnet50: the choice's name says the variant
        if key in node and named.startswith(base) and named[len(base):].isdigit() and node[key] != int(named[len(base):]):
            raise BadValue(f"{group}.{key}", f"{group}.{key}={settings.as_typed(node.get(key))} is not what {group}={named} "
                           f"is; choose {group}={base}{node.get(key)} instead of setting {group}.{key}")
    vit_reads, views_size = _lookup(values, "model.image_size"), _lookup(values, "method.views.size")
    if _lookup(values, "model.patch_size") is not _ABSENT and isinstance(vit_reads, int) and isinstance(views_size, int) \
            and views_size != vit_reads:  # a ViT's position embeddings fix its input size
        raise BadValue("method.views.size", f"method.views.size={views_size} is not the ViT's input size (model.image_size="
                       f"{vit_reads}); give method.views.size={vit_reads}, or set data.image_size, which both follow")
    if isinstance(length := data.get("probe_length"), int) and isinstance(block := data.get("block_size"), int) and length > block:
        raise BadValue("data.probe_length", f"data.probe_length={length} is longer than the model reads (data.block_size="
                       f"{block}); give data.probe_length=1..{block}")
    if probing and isinstance(families := data.get("families"), list) and len(families) < 2:
        raise BadValue("data.families", f"data.families={settings.as_typed(families)} gives the probe (which family a line belongs to) "
                       f"{len(families)} class(es); give at least 2 families, or run with probe.enabled=false")


def _divisor(n: int, near: int) -> int:
    """The divisor of n nearest to `near` (a number of heads that fits a width)."""
    return min((d for d in range(1, n + 1) if n % d == 0), key=lambda d: (abs(d - near), d))


def doubtful(values: dict) -> list[str]:
    """Settings that are allowed but probably not meant, each said in a line (the run goes on)."""
    lines = []
    warmup, steps = _lookup(values, "method.optim.warmup"), _lookup(values, "trainer.max_steps")
    if isinstance(warmup, (int, float)) and warmup >= 1 and isinstance(steps, int) and steps > 0 and warmup >= steps:
        lines.append(f"method.optim.warmup={warmup} steps is as long as the run or longer (trainer.max_steps={steps}): "
                     "the learning rate never reaches method.optim.lr; give a shorter warmup, or a fraction of the run (e.g. 0.05)")
    return lines


def _lookup(values: dict, key: str):
    """The value at a dotted key of plain config data, or _ABSENT."""
    for part in key.split("."):
        if not isinstance(values, dict) or part not in values:
            return _ABSENT
        values = values[part]
    return values


_ABSENT = object()


def check_modalities(cfg: DictConfig) -> None:
    """The method, the data and the encoder agree on the modality, and data2vec's centred text targets
    get batches of two sequences or more."""
    classes = {group: settings.find_class(cfg[group]._target_) for group in ("method", "data", "model")}
    if missing := next((group for group, klass in classes.items() if klass is None), None):
        raise UserError(f"{missing}._target_={cfg[missing]._target_} is not a class that can be imported; choose a "
                        f"{missing} by name ({missing}=<name>), or give an importable class")
    method, data, model = classes.values()
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
    for group, dictated in (("model", datamodule.encoder_settings()), ("method", datamodule.method_settings())):
        for key, value in dictated.items():  # a value given for one of them would be overwritten without a word
            given = cfg[group].get(key)
            if isinstance(value, (int, float, str)) and given is not None and given != value:
                raise BadValue(f"{group}.{key}", f"{group}.{key}={given} is not the data's ({value}): the data sets it; "
                               f"drop {group}.{key}=... and set the data's own setting (data.*) instead")
        with open_dict(fitted):
            fitted[group].update(dictated)
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
