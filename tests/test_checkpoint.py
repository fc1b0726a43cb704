"""The checkpoint: what it holds, that a checkpoint of the format before ssl_zoo/checkpoint.py still
loads and probes to the same figures, that a newer format is refused with one line, and that a text
model's tokenizer travels as the method's own state."""

import copy

import pytest
import torch
from omegaconf import OmegaConf

from conftest import TINY, compose_train
from ssl_zoo.api import compose
from ssl_zoo.build import build_method
from ssl_zoo.checkpoint import CONFIG_KEY, FORMAT, FORMAT_KEY, load_method, read_checkpoint
from ssl_zoo.commands.probe import probe
from ssl_zoo.errors import UserError
from ssl_zoo.run.train import train

PROBE = ["probe.max_train=200", "probe.steps=50", "probe.weight_decays=[0.0]"]


@pytest.fixture(scope="module")
def simclr_checkpoint(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("simclr")
    train(compose_train(*TINY, "method=simclr", "probe.enabled=false"), run_dir)
    return run_dir / "checkpoints" / "last.ckpt"


def as_format_1(ckpt: dict) -> dict:
    """The checkpoint as ssl-zoo wrote it before checkpoint.py: no format key, the views' class at its
    old place, the batch size copied into the optimizer settings."""
    old = copy.deepcopy(ckpt)
    del old[FORMAT_KEY]
    old[CONFIG_KEY]["method"]["views"]["_target_"] = "ssl_zoo.data.image_views.ImageViews"
    old[CONFIG_KEY]["method"]["optim"]["batch_size"] = old[CONFIG_KEY]["data"]["batch_size"]
    return old


def test_a_checkpoint_holds_the_resolved_run_config_and_its_format(simclr_checkpoint):
    ckpt = torch.load(simclr_checkpoint, weights_only=True)
    assert ckpt[FORMAT_KEY] == FORMAT
    assert ckpt[CONFIG_KEY]["method"]["name"] == "simclr" and "${" not in str(ckpt[CONFIG_KEY])


def test_a_format_1_checkpoint_loads_and_probes_as_the_current_one(simclr_checkpoint, tmp_path):
    old = as_format_1(torch.load(simclr_checkpoint, weights_only=True))
    with pytest.raises(Exception):  # as it was written, the current code cannot build it: the upgrade is what loads it
        build_method(OmegaConf.create(copy.deepcopy(old[CONFIG_KEY])))
    old_path = tmp_path / "old" / "checkpoints" / "last.ckpt"
    old_path.parent.mkdir(parents=True)
    torch.save(old, old_path)

    (new_method, _), (old_method, _) = load_method(simclr_checkpoint), load_method(old_path)
    for key, value in new_method.state_dict().items():
        assert torch.equal(old_method.state_dict()[key], value), key
    figures = [probe(compose(f"checkpoint={path}", *PROBE, config_name="probe"))["probe"] for path in (simclr_checkpoint, old_path)]
    for key in ("linear_acc", "knn_acc", "random_init_linear_acc"):
        assert figures[0][key] == figures[1][key], key
    written = OmegaConf.load(simclr_checkpoint.parent.parent / "config.yaml")  # re-probed: the run's config says how
    assert written.probe.enabled is True and written.method.name == "simclr"  # it was trained with probe.enabled=false


def test_a_checkpoint_of_a_newer_format_is_refused_with_one_line(simclr_checkpoint, tmp_path):
    newer = torch.load(simclr_checkpoint, weights_only=True)
    newer[FORMAT_KEY] = FORMAT + 1
    torch.save(newer, tmp_path / "newer.ckpt")
    with pytest.raises(UserError, match=f"written by a newer ssl-zoo \\(checkpoint format {FORMAT + 1}, this one reads up to {FORMAT}\\)"):
        read_checkpoint(tmp_path / "newer.ckpt")


def test_the_tokenizer_travels_as_the_text_methods_own_state(gpt_run, corpus):
    from ssl_zoo.data.text import TextFile

    path = gpt_run[0] / "checkpoints" / "last.ckpt"
    ckpt = torch.load(path, weights_only=True)
    method, _ = load_method(path)
    assert method.tokenizer.to_str() == ckpt["ssl_zoo_tokenizer"]  # restored by on_load_checkpoint
    # the data a trained model is probed on is read with that tokenizer, not one fitted to it anew
    settings = method.data_settings()
    data = TextFile(path=str(corpus), block_size=16, **settings)
    data.setup()
    assert data.tokenizer is settings["model_tokenizer"]
