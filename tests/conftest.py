import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from ssl_zoo import config_dir

ROOT = Path(__file__).resolve().parents[1]
# Tokenizers and token ids are cached here, not in the user's ~/.cache (the CLI subprocesses inherit it).
os.environ["SSL_ZOO_CACHE"] = tempfile.mkdtemp(prefix="ssl_zoo_test_cache_")

# A run small enough for a test: a few steps on a few hundred tiny images, a quick probe.
TINY = [
    "trainer=debug",
    "data.num_train=256",
    "data.num_test=100",
    "data.batch_size=32",
    "probe.max_train=200",
    "probe.steps=50",
    "probe.lrs=[0.1]",
    "probe.weight_decays=[0.0]",
]


def compose_train(*overrides: str):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def run_cli(*args: str, cwd=None, timeout=600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "ssl_zoo", *args], cwd=cwd or ROOT, capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture
def tiny_overrides():
    return list(TINY)
