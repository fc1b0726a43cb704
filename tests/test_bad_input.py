"""Bad values are refused at start-up, before any data is built, in one line naming the key, the value
and the valid range (build.check_settings); the command line turns each into `ssl-zoo: error: ...`, exit 2."""

import pytest

from conftest import run_cli
from ssl_zoo import api
from ssl_zoo.build import require_values
from ssl_zoo.errors import BadValue

CASES = [
    ("train", "method.optim.lr=-1", "method.optim.lr=-1 is out of range; it must be a number above 0"),
    ("train", "method.optim.lr=abc", "method.optim.lr=abc is out of range; it must be a number above 0"),
    ("train", "method.optim.lr=0", "method.optim.lr=0 is out of range"),
    ("train", "method.optim.weight_decay=-0.1", "method.optim.weight_decay=-0.1 is out of range; it must be a number at least 0"),
    ("train", "+method.optim.momentum=1.5", "method.optim.momentum=1.5 is out of range; it must be a number between 0 and 1"),
    ("train", "data.batch_size=0", "data.batch_size=0 is out of range; it must be a whole number at least 1"),
    ("train", "data.batch_size=2.5", "data.batch_size=2.5 is out of range; it must be a whole number at least 1"),
    ("train", "data.num_workers=-1", "data.num_workers=-1 is out of range; it must be a whole number at least 0"),
    ("train", "data.image_size=0", "data.image_size=0 is out of range; it must be a whole number at least 1"),
    ("train", "trainer.max_steps=-2", "trainer.max_steps=-2 is out of range; it must be a whole number at least -1"),
    ("train", "trainer.max_steps=0", "trainer.max_steps=0 trains nothing"),
    ("train", "probe.batch_size=0", "probe.batch_size=0 is out of range; it must be a whole number at least 1"),
    ("train", "probe.val_fraction=2", "probe.val_fraction=2 is out of range; it must be a number above 0 and at most 0.99"),
    ("train", "probe.val_fraction=0", "probe.val_fraction=0 is out of range"),
    ("train", "probe.knn_k=0", "probe.knn_k=0 is out of range; it must be a whole number at least 1"),
    ("train", "probe.knn_temperature=-1", "probe.knn_temperature=-1 is out of range; it must be a number above 0"),
    ("train", "probe.max_train=0", "probe.max_train=0 is out of range; it must be a whole number at least 1 (or null)"),
    ("train", "probe.steps=0", "probe.steps=0 is out of range"),
    ("train", "probe.finetune_steps=-5", "probe.finetune_steps=-5 is out of range"),
    ("train", "method.temperature=-1", "method.temperature=-1 is out of range; it must be a number above 0"),
    ("train", "method.temperature=0", "method.temperature=0 is out of range"),
    ("train", "seed=-3", "seed=-3 is out of range; it must be a whole number at least 0"),
    ("train", "checkpoint_every_n_steps=0", "checkpoint_every_n_steps=0 is out of range"),
    ("train", "method=gpt data.block_size=0", "data.block_size=0 is out of range; it must be a whole number at least 1"),
    ("train", "method=gpt data.vocab_size=0", "data.vocab_size=0 is out of range; it must be a whole number at least 8"),
    ("train", "method=gpt data.val_fraction=1", "data.val_fraction=1 is out of range"),
    ("train", "method=masked_speech method.mask_prob=0", "method.mask_prob=0 is out of range; it must be a number above 0"),
    ("train", "method=masked_speech method.span=0", "method.span=0 is out of range"),
    ("serve", "checkpoint=/x port=99999", "port=99999 is out of range; it must be a whole number between 1 and 65535"),
    ("serve", "checkpoint=/x port=abc", "port=abc is out of range"),
    ("embed_plot", "checkpoint=/x max_points=0", "max_points=0 is out of range; it must be a whole number at least 2"),
    ("embed_plot", "checkpoint=/x perplexity=-1", "perplexity=-1 is out of range; it must be a number above 0"),
]


@pytest.mark.parametrize("command, overrides, expected", CASES, ids=[c[1] for c in CASES])
def test_a_bad_value_is_refused_at_start_up_naming_key_value_and_range(command, overrides, expected):
    cfg = api.compose(*overrides.split(), config_name=command)
    with pytest.raises(BadValue) as error:
        require_values(cfg)
    assert expected in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("args", [
    ["train", "method.optim.lr=-1", "data.num_train=100000000"],  # refused before 100M images would be drawn
    ["serve", "checkpoint=/no/such.ckpt", "port=99999"],
    ["embed-plot", "checkpoint=/no/such.ckpt", "max_points=0"],
])
def test_the_command_line_answers_a_bad_value_in_one_line_before_any_work(args, tmp_path):
    result = run_cli(*args, f"hydra.run.dir={tmp_path / 'run'}" if args[0] == "train" else "hydra.run.dir=.", cwd=tmp_path)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and lines[-1].startswith("ssl-zoo: error: ") and "Traceback" not in result.stderr
    assert "is out of range" in lines[-1]
    assert not (tmp_path / "run" / "results.json").exists() and not (tmp_path / "run" / "checkpoints").exists()
