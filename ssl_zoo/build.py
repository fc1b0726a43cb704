"""From a config to objects: the datamodule (`data`), the encoder (`model`) fitted to it, and the
method (`method`) around the encoder. Every command builds through here."""

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import MissingMandatoryValue

from ssl_zoo.errors import UserError


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


def build_datamodule(cfg: DictConfig, **settings):
    """The datamodule of cfg.data; settings: what a trained model needs its data read with (see
    SSLMethod.data_settings)."""
    return _build(cfg.data, **settings)


def fit_to_data(cfg: DictConfig, datamodule) -> None:
    """Record in cfg.model and cfg.method what the data dictates (a text model's vocabulary size and
    context; a speech model's input size and frames, and its front end's sample rate and features),
    so that the stored config rebuilds the same method without the data."""
    with open_dict(cfg):
        cfg.model.update(datamodule.encoder_settings())
        cfg.method.update(datamodule.method_settings())


def build_method(cfg: DictConfig):
    """The method with a freshly initialised encoder (`model`), as the config describes it."""
    return _build(cfg.method, backbone=_build(cfg.model))


def random_init(cfg: DictConfig):
    """The method as it was initialised before pretraining (the same seed, the same draws): the
    probe's baseline to beat."""
    torch.manual_seed(cfg.seed)
    return build_method(cfg)


def for_training(cfg: DictConfig, **data_settings):
    """(datamodule, method) of a training run: the data set up, the encoder fitted to it and freshly
    initialised, the method told about its data. data_settings: what a resumed run's model needs its
    data read with (SSLMethod.data_settings)."""
    datamodule = build_datamodule(cfg, **data_settings)
    datamodule.setup()
    fit_to_data(cfg, datamodule)
    method = random_init(cfg)  # re-built the same way for the random-init probe
    method.use_data(datamodule.info())
    return datamodule, method
