"""The config tree: every group composes, ships inside the wheel, and the SLURM launcher config resolves."""

import subprocess
import sys
import zipfile

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import get_class
from omegaconf import OmegaConf

from conftest import ROOT, compose_train
from ssl_zoo import config_dir


@pytest.mark.parametrize("method", ["simclr", "byol"])
@pytest.mark.parametrize("data", ["shapes", "cifar10", "cifar100", "stl10", "image_folder"])
@pytest.mark.parametrize("model", ["small_cnn", "resnet18", "resnet50"])
def test_every_image_combination_composes_to_importable_classes(method, data, model):
    extra = ["data.path=/somewhere"] if data == "image_folder" else []
    cfg = compose_train(f"method={method}", f"data={data}", f"model={model}", *extra)
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # every interpolation resolves
    assert get_class(cfg.method._target_).modality == get_class(cfg.data._target_).modality == "image"
    assert cfg.method.optim.batch_size == cfg.data.batch_size


@pytest.mark.parametrize("trainer", ["cpu", "gpu", "ddp", "debug"])
def test_trainer_configs_are_trainer_arguments(trainer):
    import inspect

    import pytorch_lightning as pl

    cfg = compose_train(f"trainer={trainer}")
    accepted = inspect.signature(pl.Trainer.__init__).parameters
    assert set(cfg.trainer) <= set(accepted)


def test_slurm_launcher_config_resolves_to_submitit():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    assert "submitit" in cfg.hydra.launcher._target_.lower()
    assert cfg.hydra.launcher.tasks_per_node == 1


def test_configs_ship_inside_the_wheel(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True)
    wheel = next(tmp_path.glob("ssl_zoo-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in sorted(p.relative_to(ROOT / "conf") for p in (ROOT / "conf").rglob("*.yaml")):
        assert f"ssl_zoo/conf/{path.as_posix()}" in names
