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


@pytest.mark.parametrize("trainer", ["cpu", "cpu_image", "cpu_byol", "cpu_text", "cpu_bert", "gpu", "ddp", "debug"])
def test_trainer_configs_are_trainer_arguments(trainer):
    import inspect

    import pytorch_lightning as pl

    cfg = compose_train(f"trainer={trainer}")
    accepted = inspect.signature(pl.Trainer.__init__).parameters
    assert set(cfg.trainer) <= set(accepted)


def test_every_method_trains_at_the_precision_it_is_fastest_in_unless_told():
    for method in ("simclr", "byol", "gpt", "bert", "masked_speech", "mae"):
        assert compose_train(f"method={method}").trainer.precision == "auto", method  # ssl_zoo/run/precision.py decides
    assert compose_train("method=byol").trainer.max_steps == 1500  # BYOL's own budget
    assert compose_train("method=byol", "trainer=debug").trainer.precision == "32-true"  # trainer= wins
    assert compose_train("method=byol", "trainer.precision=bf16-mixed").trainer.precision == "bf16-mixed"


def test_slurm_launcher_config_resolves_to_submitit():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    assert "submitit" in cfg.hydra.launcher._target_.lower()
    assert cfg.hydra.launcher.tasks_per_node == 1


def test_configs_and_modules_ship_inside_the_wheel(tmp_path):
    import shutil

    source = tmp_path / "source"  # a copy: a checkout's build/ folder may hold files of an older build
    for part in ("ssl_zoo", "conf", "pyproject.toml", "README.md"):
        copy = shutil.copytree if (ROOT / part).is_dir() else shutil.copy
        copy(ROOT / part, source / part, **({"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree else {}))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(source)],
                   check=True, capture_output=True)
    wheel = next(tmp_path.glob("ssl_zoo-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in sorted(p.relative_to(ROOT / "conf") for p in (ROOT / "conf").rglob("*.yaml")):
        assert f"ssl_zoo/conf/{path.as_posix()}" in names
    assert "ssl_zoo/web/index.html" in names  # the serve page
    for path in sorted(p.relative_to(ROOT) for p in (ROOT / "ssl_zoo").rglob("*.py")):
        assert path.as_posix() in names  # every module of every package


TRANSFORMERS = ["transformer_nano", "transformer_micro", "transformer_tiny", "transformer_mini", "transformer_small", "transformer_gpt2"]


@pytest.mark.parametrize("method", ["gpt", "bert"])
@pytest.mark.parametrize("data", ["python_stdlib", "text_file", "icl_mix"])
@pytest.mark.parametrize("model", TRANSFORMERS)
def test_every_text_combination_composes(method, data, model):
    extra = ["data.path=/somewhere"] if data == "text_file" else []
    cfg = compose_train(f"method={method}", f"data={data}", f"model={model}", *extra)
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    assert get_class(cfg.method._target_).modality == get_class(cfg.data._target_).modality == "text"


def test_text_methods_default_to_a_transformer_and_embedded_text():
    cfg = compose_train("method=gpt")
    assert (cfg.model.name, cfg.data.name, cfg.trainer.max_steps) == ("transformer_tiny", "python_stdlib", 1500)
    assert compose_train("method=gpt", "trainer=gpu").trainer.accelerator == "gpu"
    assert compose_train("method=bert", "model=transformer_nano").model.name == "transformer_nano"  # the user's choice wins


def test_transformer_sizes_span_a_tenth_of_a_million_to_gpt2_small():
    from ssl_zoo.nn.transformer import Transformer

    sizes = {}
    for name in TRANSFORMERS:
        spec = OmegaConf.to_container(compose_train("method=gpt", f"model={name}").model)
        spec.pop("name"), spec.pop("_target_")
        model = Transformer(vocab_size=50257, block_size=1024, **spec)
        embeddings = model.tok_emb.weight.numel() + model.pos_emb.weight.numel()
        sizes[name] = sum(p.numel() for p in model.parameters()) - embeddings
    assert 0.05e6 < sizes["transformer_nano"] < 0.2e6
    assert sizes["transformer_mini"] == pytest.approx(2.7e6, rel=0.05)  # the largest of experiment=icl_scaling
    assert sizes["transformer_small"] == pytest.approx(10.6e6, rel=0.05)  # nanoGPT's baby GPT
    assert sizes["transformer_gpt2"] == pytest.approx(85.0e6, rel=0.02)  # GPT-2 small: 124M with its embeddings


@pytest.mark.parametrize("experiment", ["gpt_shakespeare_char_cpu", "gpt_shakespeare_char", "icl_scaling"])
def test_experiments_compose(experiment):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        extra = [] if experiment == "icl_scaling" else ["data.path=/x"]
        cfg = compose(config_name="train", overrides=[f"experiment={experiment}", *extra], return_hydra_config=True)
    assert cfg.method.name == "gpt"
    if experiment == "gpt_shakespeare_char_cpu":
        assert (cfg.model.n_layer, cfg.model.n_head, cfg.model.n_embd) == (4, 4, 128)
        assert (cfg.data.block_size, cfg.data.batch_size, cfg.trainer.max_steps, cfg.model.dropout) == (64, 12, 2000, 0.0)
    if experiment == "gpt_shakespeare_char":
        assert (cfg.model.n_layer, cfg.model.n_embd, cfg.data.block_size, cfg.data.batch_size) == (6, 384, 256, 64)
        assert (cfg.model.dropout, cfg.method.optim.lr, cfg.trainer.max_steps, cfg.model.bias) == (0.2, 1e-3, 5000, False)
    if experiment == "icl_scaling":
        jobs = cfg.hydra.sweeper.params["+icl_scaling"].split(",")
        assert cfg.data.name == "icl_mix" and len(jobs) >= 5  # four sizes and the natural-text baseline
        assert all((config_dir() / "icl_scaling" / f"{job}.yaml").is_file() for job in jobs)
        assert "ScalingReport" in cfg.hydra.callbacks.icl_scaling._target_
        assert list(cfg.icl.shots) == [0, 1, 4, 16] and cfg.trainer.max_steps == 1500  # the experiment wins over train.yaml


@pytest.mark.parametrize("method", ["masked_speech", "apc"])
@pytest.mark.parametrize("data", ["spoken_words", "audio_folder", "fsdd", "speech_commands", "librispeech"])
def test_every_speech_combination_composes(method, data):
    extra = [] if data == "spoken_words" else ["data.root=/somewhere"]
    cfg = compose_train(f"method={method}", f"data={data}", *extra)
    resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    assert get_class(cfg.method._target_).modality == get_class(cfg.data._target_).modality == "speech"
    from ssl_zoo.build import build_datamodule, fit_to_data

    cfg = fit_to_data(cfg, build_datamodule(cfg))  # as build.for_training does: the data hands the method its front end
    assert cfg.method.features == resolved["data"]["features"]  # one set of settings, the data's
    assert cfg.method.sample_rate == resolved["data"]["sample_rate"] == 16_000


def test_zoo_demo_runs_one_job_per_file_of_conf_zoo_demo():
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        demo = compose(config_name="train", overrides=["experiment=zoo_demo"], return_hydra_config=True)
    jobs = demo.hydra.sweeper.params["+zoo_demo"].split(",")
    files = sorted(p.stem for p in (config_dir() / "zoo_demo").glob("*.yaml"))
    assert sorted(jobs) == files == ["apc", "bert", "byol", "gpt", "masked_speech", "simclr"]
    assert str(demo.hydra.mode).endswith("MULTIRUN") and "ComparisonReport" in demo.hydra.callbacks.comparison._target_
    expected = {"simclr": ("shapes", "small_cnn"), "byol": ("shapes", "small_cnn"),
                "gpt": ("python_stdlib", "transformer_micro"), "bert": ("python_stdlib", "transformer_micro"),
                "masked_speech": ("spoken_words", "transformer_micro"), "apc": ("spoken_words", "transformer_micro")}
    for job in jobs:  # one job of the sweep: the method with its own data, the job's model and step budget
        cfg = compose_train("experiment=zoo_demo", f"+zoo_demo={job}")
        assert cfg.method.name == job and (cfg.data.name, cfg.model.name) == expected[job]
        assert 0 < cfg.trainer.max_steps <= 2500 and cfg.probe.max_train == 5000
    assert compose_train("experiment=zoo_demo", "+zoo_demo=gpt", "trainer.max_steps=7").trainer.max_steps == 7
