"""The command line as a user types it: train -> probe round trip, a sweep then compare (bad input: test_bad_input.py)."""

import json

import pytest
from PIL import Image

from conftest import TINY, one_error_line, run_cli


def test_train_then_probe_round_trip(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("train", "method=byol", *TINY, f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "probe 'shape'" in result.stdout
    assert "training byol on shapes: 1 cpu device(s), precision 32-true" in result.stdout
    assert "GPU available" not in result.stdout + result.stderr and "Tip:" not in result.stdout + result.stderr  # no banner
    for name in ("config.yaml", "metrics.csv", "checkpoints/last.ckpt", "results.json"):
        assert (run_dir / name).is_file(), name
    results = json.loads((run_dir / "results.json").read_text())
    assert results["method"] == "byol" and results["modality"] == "image" and results["data"] == "shapes"
    assert results["model"] == "small_cnn" and results["params"] > 0 and results["seed"] == 0
    assert results["train"]["steps"] == 4 and results["train"]["final_loss"] is not None
    assert results["extra"]["precision"] == "32-true"  # trainer=debug
    probe = results["probe"]
    assert probe["task"] == "shape" and probe["num_classes"] == 10
    for key in ("linear_acc", "knn_acc", "random_init_linear_acc"):
        assert 0.0 <= probe[key] <= 1.0

    (run_dir / "results.json").unlink()
    result = run_cli("probe", f"checkpoint={run_dir / 'checkpoints' / 'last.ckpt'}", "probe.max_train=200",
                     "probe.steps=50", "probe.weight_decays=[0.0]")
    assert result.returncode == 0, result.stderr[-3000:]
    again = json.loads((run_dir / "results.json").read_text())
    assert again["method"] == "byol" and again["probe"]["num_classes"] == 10
    # Same checkpoint, same data, same probe settings: the same features and the same accuracy.
    assert again["probe"]["knn_acc"] == pytest.approx(probe["knn_acc"])


def test_multirun_sweep_then_compare(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli("train", "method=simclr,byol", "-m", *TINY,  # -m after an override, as users type it too "probe.random_init_baseline=false",
                     f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr[-3000:]
    found = sorted(p.parent.name for p in sweep.rglob("results.json"))
    assert found == ["0-simclr-shapes-small_cnn", "1-byol-shapes-small_cnn"]

    (sweep / "broken").mkdir()
    (sweep / "broken" / "results.json").write_text('{"method": "half a file"')
    table = run_cli("compare", str(sweep), "--plot", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "| simclr | small_cnn |" in table.stdout and "| byol | small_cnn |" in table.stdout
    assert "broken/results.json: skipped" in table.stderr
    import csv

    rows = list(csv.DictReader(open(sweep / "comparison.csv")))
    assert sorted(r["method"] for r in rows) == ["byol", "simclr"] and all(r["task"] == "shape" for r in rows)
    for r in rows:  # the CSV carries the figures of each results.json, unrounded
        results = json.loads(open(r["paths"]).read())  # one seed each: one path
        assert float(r["linear_acc"]) == results["probe"]["linear_acc"] and int(r["steps"]) == 4
    assert (sweep / "comparison.md").read_text() in table.stdout
    for png in ("loss_curves.png", "probe_accuracy.png"):
        assert (sweep / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    assert not (sweep / "icl_shots.png").exists()  # no in-context scores in these runs: no such plot

    simclr_run = sweep / "0-simclr-shapes-small_cnn"
    maps = run_cli("embed-plot", f"checkpoint={simclr_run / 'checkpoints' / 'last.ckpt'}", "max_points=60")
    assert maps.returncode == 0, maps.stderr[-3000:]
    assert (simclr_run / "embeddings.png").read_bytes()[:4] == b"\x89PNG" and "random init encoder: done" in maps.stdout

    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no results.json found" in one_error_line(run_cli("compare", str(empty)))
    one_seed = one_error_line(run_cli("compare", str(sweep), "--min-seeds", "2"))  # a sweep of seed 0 only
    assert "has 1 seed(s) (0), fewer than the 2 asked for" in one_seed and "seed=0,1,2" in one_seed
    rows = [line for line in (sweep / "comparison.md").read_text().splitlines() if line.startswith("| ")]
    assert rows and not any("±" in row for row in rows)  # one seed each: no interval was printed


def test_runs_from_any_folder(tmp_path):
    result = run_cli("train", "method=nope", cwd=tmp_path)
    assert "choose one of: aim, apc, bert, byol, data2vec_image, data2vec_speech, data2vec_text, gpt, mae, masked_speech, simclr" in one_error_line(result)


def test_probe_a_saved_run_on_other_data(tmp_path):
    import numpy as np
    from PIL import Image

    run_dir = tmp_path / "run"
    assert run_cli("train", *TINY, "probe.enabled=false", f"hydra.run.dir={run_dir}").returncode == 0
    folder = tmp_path / "folder"
    rng = np.random.default_rng(0)
    for label, colour in (("red", 0), ("green", 1)):
        (folder / label).mkdir(parents=True)
        for i in range(20):
            pixels = rng.integers(0, 60, size=(24, 24, 3), dtype=np.uint8)
            pixels[..., colour] += 150
            Image.fromarray(pixels).save(folder / label / f"{i}.png")
    result = run_cli("probe", f"checkpoint={run_dir / 'checkpoints' / 'last.ckpt'}", "data=image_folder",
                     f"data.path={folder}", "data.num_workers=0", "probe.steps=50",
                     "probe.weight_decays=[0.0]")
    assert result.returncode == 0, result.stderr[-3000:]
    other = json.loads((run_dir / "results_image_folder.json").read_text())
    assert other["data"] == "image_folder" and other["probe"]["task"] == "folder_class"
    assert other["probe"]["linear_acc"] == 1.0  # red against green: any encoder separates them
    assert "data.image_size is read as the encoder was trained: 32 (not 64)" in result.stdout  # the pictures at its size
    own = json.loads((run_dir / "results.json").read_text())  # the run's own results are not touched
    assert own["data"] == "shapes" and own["probe"] is None and own["train"]["steps"] == 4
    assert other["train"] == own["train"]  # the same encoder, trained the same way


def test_the_help_names_real_groups_tasks_and_commands():
    """Every method=, data=, model=, task= in the usage text is a choice that exists."""
    import re

    from ssl_zoo import config_dir
    from ssl_zoo.cli import HYDRA_COMMANDS, USAGE
    from ssl_zoo.data.icl_tasks import FAMILIES

    for group, choice in re.findall(r"\b(method|data|model|experiment)=(\w+)", USAGE):
        assert (config_dir() / group / f"{choice}.yaml").is_file(), (group, choice)
    assert all(task in FAMILIES for task in re.findall(r"\btask=(\w+)", USAGE))
    listed = re.findall(r"^  ([a-z-]+) ", USAGE, flags=re.M)
    assert set(listed) == set(HYDRA_COMMANDS) | {"compare", "lm-eval"}


def test_ctrl_c_saves_the_step_it_was_in_and_says_how_to_resume(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import ROOT
    from ssl_zoo.checkpoint import read_checkpoint

    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "ssl_zoo", "train", *TINY, "trainer.max_steps=100000", "checkpoint_every_n_steps=1",
               f"hydra.run.dir={run_dir}"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONWARNINGS": "ignore"})
    deadline = time.time() + 120
    while not (run_dir / "checkpoints" / "last.ckpt").exists() and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    line = [l for l in stderr.splitlines() if l.startswith("ssl-zoo:")][-1]
    step = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")["global_step"]
    assert line.startswith(f"ssl-zoo: interrupted: SIGINT at step {step}: checkpoint saved in") and "resume=auto" in line
    assert "Traceback" not in stderr and not (run_dir / "results.json").exists()


def test_compare_into_a_folder_that_cannot_be_written_is_one_line(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text(json.dumps(
        {"method": "simclr", "modality": "image", "data": "shapes", "model": "m", "params": 1, "seed": 0,
         "train": {"steps": 1, "seconds": 1.0, "final_loss": 1.0}, "probe": None}))
    (tmp_path / "a_file").write_text("not a folder")
    line = one_error_line(run_cli("compare", str(tmp_path / "run"), "--out", str(tmp_path / "a_file" / "out")))
    assert line.startswith("ssl-zoo: error: cannot write ") and "a_file is a file, not a folder" in line and "--out" in line
