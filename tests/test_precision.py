"""trainer.precision=auto: fp32 where the CPU has no native bf16; where it has, the faster of a few timed
steps (bf16 by a margin), measured once and kept; the choice is in results.json and a given precision wins."""

import json

import pytest
import torch

from conftest import TINY, compose_train, run_cli
from ssl_zoo import build
from ssl_zoo.run import precision
from ssl_zoo.errors import BadValue
from ssl_zoo.infer.load import inference_dtype


@pytest.fixture
def tiny_run(tmp_path, monkeypatch):
    monkeypatch.setenv("SSL_ZOO_CACHE", str(tmp_path / "cache"))
    cfg = compose_train("method=simclr", *TINY, "trainer.precision=auto")
    cfg, datamodule, method = build.for_training(cfg)
    return cfg, method, datamodule


def native(monkeypatch, yes: bool):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: yes)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: yes)


def test_without_native_bf16_it_is_fp32_and_nothing_is_timed(tiny_run, monkeypatch):
    native(monkeypatch, False)
    monkeypatch.setattr(precision, "step_seconds", lambda *a: pytest.fail("timed"))
    assert precision.choose_precision(*tiny_run)["precision"] == "32-true"


@pytest.mark.parametrize("bf16_seconds, chosen", [(0.5, "bf16-mixed"), (0.95, "32-true"), (1.2, "32-true")])
def test_bf16_is_chosen_only_when_it_is_faster_by_the_margin_and_the_choice_is_kept(tiny_run, monkeypatch, bf16_seconds, chosen):
    native(monkeypatch, True)
    timed = []
    monkeypatch.setattr(precision, "step_seconds", lambda method, inputs, bf16: timed.append(bf16) or (bf16_seconds if bf16 else 1.0))
    first = precision.choose_precision(*tiny_run)
    assert first["precision"] == chosen and (first["fp32_step_s"], first["bf16_step_s"]) == (1.0, bf16_seconds)
    assert timed == [False, True] and first["source"].startswith("measured")
    again = precision.choose_precision(*tiny_run)  # the same CPU, model and batch: not timed again
    assert again["precision"] == chosen and timed == [False, True] and "cached" in again["source"]


def test_timing_leaves_the_runs_weights_alone(tiny_run, monkeypatch):
    native(monkeypatch, True)
    cfg, method, datamodule = tiny_run
    before = {k: v.clone() for k, v in method.state_dict().items()}  # weights and batch-norm statistics
    choice = precision.choose_precision(cfg, method, datamodule)
    assert choice["fp32_step_s"] > 0 and choice["bf16_step_s"] > 0
    assert all(torch.equal(before[k], v) for k, v in method.state_dict().items())


def test_the_choice_is_in_results_and_a_given_precision_wins(tmp_path):
    auto = run_cli("train", "method=simclr", *TINY, "trainer.precision=auto", f"hydra.run.dir={tmp_path / 'auto'}", "probe.enabled=false")
    assert auto.returncode == 0, auto.stderr[-3000:]
    extra = json.loads((tmp_path / "auto" / "results.json").read_text())["extra"]
    assert extra["precision"] == extra["precision_choice"]["precision"] in ("32-true", "bf16-mixed")
    assert f"precision {extra['precision']}" in auto.stdout
    given = run_cli("train", "method=simclr", *TINY, "trainer.precision=32-true", f"hydra.run.dir={tmp_path / 'given'}", "probe.enabled=false")
    assert given.returncode == 0, given.stderr[-3000:]
    extra = json.loads((tmp_path / "given" / "results.json").read_text())["extra"]
    assert extra["precision"] == "32-true" and "precision_choice" not in extra


@pytest.mark.parametrize("has_native_bf16", [True, False])
def test_inference_weights_are_bf16_only_where_asked_or_native(monkeypatch, has_native_bf16):
    native(monkeypatch, has_native_bf16)
    cpu = torch.device("cpu")
    assert inference_dtype("auto", cpu) == (torch.bfloat16 if has_native_bf16 else torch.float32)
    assert inference_dtype("32", cpu) == torch.float32 and inference_dtype(32, cpu) == torch.float32
    assert inference_dtype("bf16", cpu) == torch.bfloat16
    with pytest.raises(BadValue, match="precision=fp16 is not one of: auto, 32, bf16"):
        inference_dtype("fp16", cpu)
