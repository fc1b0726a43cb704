"""Training in-process: resume gives the very weights of an uninterrupted run; a NaN loss stops the
run and keeps the last good checkpoint; modalities are checked."""

import pytest
import torch
from pytorch_lightning.callbacks import Callback

from conftest import TINY, compose_train
from ssl_zoo.build import check_modalities
from ssl_zoo.checkpoint import read_checkpoint
from ssl_zoo.errors import UserError
from ssl_zoo.run.train import train


class Interrupt(Exception):
    pass


class InterruptAt(Callback):
    def __init__(self, step):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise Interrupt


# 128 images in batches of 32: 4 steps an epoch, 8 steps in all, a checkpoint every 2 steps.
RESUMABLE = [*TINY, "data.num_train=128", "trainer.max_steps=8", "checkpoint_every_n_steps=2", "probe.enabled=false"]


# stop_at: at an epoch boundary (4), past the last checkpoint (5), and mid-epoch (6). bf16-mixed adds no resume
# logic of its own and is emulated (slow) on CPUs without bf16: the suite runs it at 5, `make test-slow` at all three.
@pytest.mark.parametrize("method, precision, stop_at", [
    pytest.param(method, precision, stop_at, marks=[pytest.mark.slow] if precision == "bf16-mixed" and stop_at != 5 else [])
    for method, precision in (("simclr", "32-true"), ("byol", "32-true"), ("byol", "bf16-mixed")) for stop_at in (4, 5, 6)])
def test_resume_ends_with_the_same_weights(tmp_path, method, precision, stop_at):
    overrides = [f"method={method}", *RESUMABLE, f"trainer.precision={precision}"]
    cfg = compose_train(*overrides)
    train(cfg, tmp_path / "straight")
    with pytest.raises(Interrupt):
        train(cfg, tmp_path / "resumed", callbacks=[InterruptAt(stop_at)])
    assert read_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.ckpt")["global_step"] == stop_at // 2 * 2  # every 2 steps
    train(compose_train(*overrides, "resume=auto"), tmp_path / "resumed")

    straight = read_checkpoint(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    resumed = read_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    assert straight["global_step"] == resumed["global_step"] == 8
    for key, value in straight["state_dict"].items():
        torch.testing.assert_close(resumed["state_dict"][key], value, msg=key)
    # metrics.csv continued, not started anew: the rows logged past the checkpoint are dropped and logged again
    import csv

    rows = {run: list(csv.DictReader(open(tmp_path / run / "metrics.csv"))) for run in ("straight", "resumed")}
    assert [r["step"] for r in rows["resumed"]] == [r["step"] for r in rows["straight"]]
    for a, b in zip(rows["straight"], rows["resumed"]):
        assert {k: float(v) for k, v in a.items() if v} == pytest.approx({k: float(v) for k, v in b.items() if v}), a["step"]


class SeedOfEachMicroBatch(Callback):
    """The seed of the generator each micro-batch drew its views from, by (optimizer step, micro-batch)."""

    def __init__(self):
        self.seeds = {}

    def on_before_backward(self, trainer, method, loss):
        self.seeds[(trainer.global_step, method.micro_batch)] = method.step_generator().initial_seed()


def test_under_gradient_accumulation_each_micro_batch_draws_its_own_views_and_resume_is_exact(tmp_path):
    import os
    import signal

    from ssl_zoo.run.signals import RunInterrupted

    # 256 images in batches of 32, 2 per step: 4 steps an epoch, so the checkpoint of step 2 is mid-epoch.
    overrides = ["method=simclr", *TINY, "data.num_train=256", "trainer.max_steps=8", "checkpoint_every_n_steps=2",
                 "probe.enabled=false", "trainer.accumulate_grad_batches=2"]
    watch = SeedOfEachMicroBatch()
    train(compose_train(*overrides), tmp_path / "straight", callbacks=[watch])
    assert sorted(watch.seeds) == [(step, micro) for step in range(8) for micro in (0, 1)]
    for step in range(8):  # the two halves of one step's batch get different crops
        assert watch.seeds[(step, 0)] != watch.seeds[(step, 1)]
        assert watch.seeds[(step, 0)] == hash((0, step, 0)) & 0xFFFF_FFFF_FFFF  # a run without accumulation draws the same
    straight = read_checkpoint(tmp_path / "straight" / "checkpoints" / "last.ckpt")["state_dict"]

    class CtrlCBetweenMicroBatches(Callback):  # a signal after the first half of step 5's batch
        def on_before_backward(self, trainer, method, loss):
            if trainer.global_step == 5 and method.micro_batch == 0:
                os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Interrupt):  # killed in step 3: resumed from the mid-epoch checkpoint of step 2
        train(compose_train(*overrides), tmp_path / "killed", callbacks=[InterruptAt(3)])
    with pytest.raises(RunInterrupted, match="SIGINT at step 6"):  # the step under way is finished, both halves
        train(compose_train(*overrides, "resume=auto"), tmp_path / "killed", callbacks=[CtrlCBetweenMicroBatches()])
    train(compose_train(*overrides, "resume=auto"), tmp_path / "killed")
    resumed = read_checkpoint(tmp_path / "killed" / "checkpoints" / "last.ckpt")["state_dict"]
    for key, value in straight.items():
        torch.testing.assert_close(resumed[key], value, msg=key)


def test_a_checkpoint_whose_optimizer_left_a_parameter_out_is_refused_in_one_line(tmp_path):
    """Before every trainable parameter was optimised, MAE's checkpoints held the optimizer state of all but
    its mask token: resuming one says so in one line."""
    overrides = ["method=mae", "model=vit_nano", *TINY, "data.num_train=64", "trainer.max_steps=2", "probe.enabled=false"]
    train(compose_train(*overrides), tmp_path)
    path = tmp_path / "checkpoints" / "last.ckpt"
    ckpt = torch.load(path, weights_only=True)
    groups = ckpt["optimizer_states"][0]["param_groups"]
    groups[-1]["params"] = groups[-1]["params"][1:]  # as the old optimizer had it: one parameter fewer
    torch.save(ckpt, path)
    with pytest.raises(UserError, match="cannot be resumed: its optimizer state does not match this version's parameter groups"):
        train(compose_train(*overrides[:-2], "trainer.max_steps=4", "probe.enabled=false", "resume=auto"), tmp_path)


def test_same_seed_same_run_other_seed_other_run(tmp_path):
    for name, seed in [("a", 0), ("b", 0), ("c", 1)]:
        train(compose_train(*TINY, "probe.enabled=false", f"seed={seed}"), tmp_path / name)
    weights = {n: read_checkpoint(tmp_path / n / "checkpoints" / "last.ckpt")["state_dict"] for n in "abc"}
    key = "backbone.features.0.weight"
    assert torch.equal(weights["a"][key], weights["b"][key])
    assert not torch.equal(weights["a"][key], weights["c"][key])


class PoisonAt(Callback):
    """Makes the weights NaN before the given step, as a diverging run would."""

    def __init__(self, step):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            with torch.no_grad():
                for p in pl_module.backbone.parameters():
                    p.fill_(float("nan"))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = compose_train(*TINY, "trainer.max_steps=6", "checkpoint_every_n_steps=2")
    with pytest.raises(UserError, match=r"loss became nan at step 3.*last good checkpoint is kept"):
        train(cfg, tmp_path, callbacks=[PoisonAt(3)])
    ckpt = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    assert not (tmp_path / "results.json").exists()


def test_method_and_data_of_different_modalities_are_refused():
    cfg = compose_train()
    cfg.data._target_ = "tests.test_train.SpeechData"
    with pytest.raises(UserError, match="method 'simclr' is for image but data 'shapes' is speech"):
        check_modalities(cfg)


class SpeechData:
    modality = "speech"


def test_random_init_baseline_is_the_initialisation_training_started_from(tmp_path):
    from pytorch_lightning.callbacks import Callback as _Callback

    from ssl_zoo.build import random_init

    class GrabInit(_Callback):
        def on_train_start(self, trainer, pl_module):
            self.weights = {k: v.clone() for k, v in pl_module.backbone.state_dict().items()}

    grab = GrabInit()
    cfg = compose_train(*TINY, "probe.enabled=false", "seed=7")
    train(cfg, tmp_path, callbacks=[grab])
    rebuilt = random_init(cfg).backbone.state_dict()  # as the probe's baseline is built
    for key, value in grab.weights.items():
        torch.testing.assert_close(rebuilt[key], value, msg=key)


@pytest.mark.parametrize("method", ["simclr", "byol"])
def test_a_method_step_runs_outside_a_trainer_and_channels_last_changes_no_feature(method):
    """A notebook or a benchmark calls ssl_step and embed directly; the backbone's channels-last layout
    is an implementation detail: the same features as the layers fed channels-first."""
    from ssl_zoo.build import build_method

    torch.manual_seed(0)
    model = build_method(compose_train(f"method={method}"))
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    loss, features = model.ssl_step(images)
    assert torch.isfinite(loss) and features.shape == (8, model.embed_dim)
    model.eval()
    x = model.views[0].normalize(images)
    torch.testing.assert_close(model.embed(images), model.backbone.features(x).mean(dim=(2, 3)))


def test_knn_monitor_curve_reports_its_best_as_best_and_resumes_with_the_run(tmp_path):
    import csv

    overrides = [*TINY, "data.num_train=128", "trainer.max_steps=7", "knn_monitor_every_n_steps=3", "checkpoint_every_n_steps=2",
                 "probe.random_init_baseline=false"]
    results = train(compose_train(*overrides), tmp_path / "whole")
    monitor = results["extra"]["knn_monitor"]
    assert [step for step, _ in monitor["history"]] == [3, 6, 7]  # every 3 steps, and the last
    assert monitor["best_knn_acc"] == max(acc for _, acc in monitor["history"]) and monitor["last_step"] == 7
    assert monitor["last_knn_acc"] == monitor["history"][-1][1]
    logged = [float(r["monitor/knn_acc"]) for r in csv.DictReader(open(tmp_path / "whole" / "metrics.csv")) if r.get("monitor/knn_acc")]
    assert logged == pytest.approx([acc for _, acc in monitor["history"]])

    with pytest.raises(Interrupt):  # stopped at step 4, resumed: the curve keeps its first point
        train(compose_train(*overrides), tmp_path / "resumed", callbacks=[InterruptAt(4)])
    resumed = train(compose_train(*overrides, "resume=auto"), tmp_path / "resumed")
    assert resumed["extra"]["knn_monitor"]["history"] == monitor["history"]  # resume is exact: the same curve
    with pytest.raises(UserError, match="knn_monitor_every_n_steps=-1 is out of range"):
        train(compose_train(*overrides, "knn_monitor_every_n_steps=-1"), tmp_path / "bad")


def test_resume_of_a_finished_run_changes_nothing_and_one_killed_in_the_probe_resumes_into_it(tmp_path, capsys):
    import json

    overrides = [*TINY, "data.num_train=128", "trainer.max_steps=4", "checkpoint_every_n_steps=2"]
    first = train(compose_train(*overrides), tmp_path)
    files = {name: (tmp_path / name).read_bytes() for name in ("results.json", "metrics.csv", "checkpoints/last.ckpt")}
    again = train(compose_train(*overrides, "resume=auto"), tmp_path)
    assert again == first and "is finished (4 steps, results.json written): nothing to do" in capsys.readouterr().out
    assert {name: (tmp_path / name).read_bytes() for name in files} == files  # not a byte rewritten

    (tmp_path / "results.json").unlink()  # as if killed in the probe: last.ckpt was written before it
    resumed = train(compose_train(*overrides, "resume=auto"), tmp_path)
    assert resumed["train"]["final_loss"] == first["train"]["final_loss"] is not None
    assert resumed["probe"]["linear_acc"] == first["probe"]["linear_acc"]
    assert json.loads((tmp_path / "results.json").read_text())["train"]["steps"] == 4
    assert (tmp_path / "metrics.csv").read_bytes() == files["metrics.csv"]  # the rows of the first run, kept


def test_sigint_finishes_the_step_saves_it_and_resume_continues_exactly(tmp_path):
    import os
    import signal

    from ssl_zoo.run.signals import RunInterrupted

    class CtrlCAt(Callback):  # what a user's Ctrl-C (or a scheduler's SIGTERM) does, in the middle of step 3
        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            if trainer.global_step == 3:
                os.kill(os.getpid(), signal.SIGINT)

    overrides = [*TINY, "data.num_train=128", "trainer.max_steps=6", "checkpoint_every_n_steps=100", "probe.enabled=false"]
    train(compose_train(*overrides), tmp_path / "straight")
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(RunInterrupted, match=r"SIGINT at step 4: checkpoint saved in .*; continue with the same command and "
                                             r"resume=auto hydra.run.dir="):
        train(compose_train(*overrides), tmp_path / "stopped", callbacks=[CtrlCAt()])
    assert read_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.ckpt")["global_step"] == 4  # the step it was in
    assert signal.getsignal(signal.SIGINT) is before  # the usual Ctrl-C again
    train(compose_train(*overrides, "resume=auto"), tmp_path / "stopped")
    straight = read_checkpoint(tmp_path / "straight" / "checkpoints" / "last.ckpt")["state_dict"]
    resumed = read_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.ckpt")["state_dict"]
    for key, value in straight.items():
        torch.testing.assert_close(resumed[key], value, msg=key)


def test_a_full_disk_gives_one_line_leaves_no_temp_file_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    import errno
    import os

    import ssl_zoo.checkpoint as checkpoint

    saves, real_save = [], torch.save

    def save_until_the_disk_fills(obj, f, *args, **kwargs):
        saves.append(1)
        if len(saves) == 1:
            return real_save(obj, f, *args, **kwargs)
        f.write(b"\0" * 1000)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint.torch, "save", save_until_the_disk_fills)
    overrides = [*TINY, "data.num_train=128", "trainer.max_steps=6", "checkpoint_every_n_steps=2", "probe.enabled=false"]
    with pytest.raises(UserError, match=r"cannot write .*last\.ckpt after 1,000 bytes: No space left on device; last\.ckpt is "
                                        r"left as it was"):
        train(compose_train(*overrides), tmp_path)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["last.ckpt"]  # no temp file left filling the disk
    assert read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 2  # the last good one


def test_the_settings_the_data_dictates_are_computed_once_and_the_run_config_is_final(tmp_path, corpus):
    """train() leaves the caller's config as it was; the config the run keeps (in every checkpoint and in
    config.yaml) holds what the data dictated and the precision chosen, and nothing can edit it after."""
    from omegaconf import OmegaConf

    from conftest import tiny_text

    cfg = compose_train(*tiny_text("gpt", corpus, "unused")[1:-1], "trainer.precision=auto", "probe.enabled=false")
    before = OmegaConf.to_yaml(cfg)
    seen = []

    class Look(Callback):
        def on_train_start(self, trainer, method):
            run_config = next(c for c in trainer.callbacks if type(c).__name__ == "RunRecord").config
            seen.append(run_config)

    train(cfg, tmp_path, callbacks=[Look()])
    assert OmegaConf.to_yaml(cfg) == before  # nothing written into the caller's config
    kept = OmegaConf.load(tmp_path / "config.yaml")
    assert kept.model.vocab_size is not None and kept.trainer.precision in ("32-true", "bf16-mixed")
    assert seen[0] == OmegaConf.to_container(kept, resolve=True)  # the checkpoints' config is config.yaml's
    assert read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["ssl_zoo_config"] == seen[0]


def test_a_resume_with_other_settings_is_refused_and_one_that_trains_longer_records_the_change(tmp_path):
    """A resumed run's record is the truth: a setting that shapes training cannot change on resume (config.yaml
    is left as it was); one that may (how long it trains) is recorded with the step it changed at."""
    overrides = [*TINY, "data.num_train=128", "trainer.max_steps=2", "probe.enabled=false"]
    train(compose_train(*overrides), tmp_path)
    config = (tmp_path / "config.yaml").read_bytes()
    with pytest.raises(UserError, match=r"resuming .*last\.ckpt with other settings than it was trained with: "
                                        r"method\.optim\.lr=0\.0005 \(the run's: 0\.002\); resume with the run's own settings"):
        train(compose_train(*overrides[:-2], "method.optim.lr=0.0005", "trainer.max_steps=4", "probe.enabled=false",
                            "resume=auto"), tmp_path)
    assert (tmp_path / "config.yaml").read_bytes() == config
    longer = train(compose_train(*overrides[:-2], "trainer.max_steps=4", "probe.enabled=false", "resume=auto"), tmp_path)
    assert longer["train"]["steps"] == 4
    assert longer["extra"]["changed_on_resume"] == [{"step": 2, "key": "trainer.max_steps", "from": 2, "to": 4}]
    assert "max_steps: 4" in (tmp_path / "config.yaml").read_text()


def test_a_warmup_as_long_as_the_run_is_said_in_a_warning_line_and_the_run_goes_on(tmp_path, capsys):
    results = train(compose_train(*TINY, "data.num_train=64", "trainer.max_steps=2", "method.optim.warmup=5",
                                  "probe.enabled=false"), tmp_path)
    assert results["train"]["steps"] == 2
    assert "ssl-zoo: warning: method.optim.warmup=5 steps is as long as the run or longer (trainer.max_steps=2)" in capsys.readouterr().err


def test_a_write_that_fails_inside_torch_save_is_one_line_and_the_last_good_checkpoint_stays(tmp_path):
    """torch.save reports a failed write (a full disk) as a RuntimeError, not an OSError. A real process whose
    files may not grow past half a checkpoint (RLIMIT_FSIZE, as a full disk refuses the write) resumes a run
    to train it on: its next checkpoint cannot be written."""
    import os
    import resource
    import signal
    import subprocess
    import sys

    from conftest import ROOT, one_error_line

    overrides = [*TINY, "data.num_train=128", "trainer.max_steps=2", "probe.enabled=false"]
    train(compose_train(*overrides), tmp_path)
    last = tmp_path / "checkpoints" / "last.ckpt"
    half = last.stat().st_size // 2

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (half, half))

    result = subprocess.run([sys.executable, "-m", "ssl_zoo", "train", *overrides[:-2], "trainer.max_steps=4",
                             "probe.enabled=false", "resume=auto", f"hydra.run.dir={tmp_path}"], cwd=ROOT, capture_output=True,
                            text=True, timeout=600, preexec_fn=small_files, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    line = one_error_line(result)
    assert line.startswith(f"ssl-zoo: error: cannot write {last}") and "last.ckpt is left as it was" in line, line
    assert [p.name for p in last.parent.iterdir()] == ["last.ckpt"]  # no temp file left
    assert read_checkpoint(last)["global_step"] == 2


def test_a_gpt_run_without_validation_batches_writes_its_results_without_validation_figures(tmp_path, corpus):
    from conftest import tiny_text

    cfg = compose_train(*tiny_text("gpt", corpus, "unused")[1:-1], "+trainer.limit_val_batches=0", "probe.enabled=false")
    results = train(cfg, tmp_path)
    assert results["train"]["steps"] == 4 and "val_loss" not in results["extra"]
    assert (tmp_path / "results.json").is_file()
