"""kill -9, the interruption nothing can catch: a run killed at a random step, then again in its probe,
and resumed each time with resume=auto, ends with the results.json and metrics.csv of a run that was
never interrupted (all but the wall-clock seconds), and its last.ckpt is never half written."""

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time

import torch

from conftest import ROOT, TINY

# 40 steps of 32 images (4 steps an epoch), a checkpoint every 4 steps, a probe of a few seconds.
RUN = ["train", *TINY, "data.num_train=128", "trainer.max_steps=40", "checkpoint_every_n_steps=4", "probe.max_train=1000",
       "probe.steps=300"]


def start(run_dir, *extra) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "ssl_zoo", *RUN, f"hydra.run.dir={run_dir}", *extra], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def checkpoint_step(run_dir) -> int:
    try:
        return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    except (FileNotFoundError, EOFError, RuntimeError):  # not written yet
        return -1


def kill_at_step(run_dir, step: int) -> None:
    """Start the run and kill -9 it once its checkpoint has reached `step` (the run goes on meanwhile:
    it dies somewhere after that, possibly while writing the next checkpoint)."""
    process = start(run_dir)
    deadline = time.time() + 300
    while checkpoint_step(run_dir) < step and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    output = process.communicate()[0]
    assert process.returncode == -signal.SIGKILL, f"finished before step {step} was reached:\n{output[-2000:]}"


def kill_in_the_probe(run_dir, *extra) -> None:
    process = start(run_dir, *extra)
    for line in process.stdout:
        if line.startswith("probing on "):  # printed as the probe starts; it then runs for a second or more
            break
    process.send_signal(signal.SIGKILL)
    output = process.communicate()[0]
    assert process.returncode == -signal.SIGKILL, f"the run finished before it could be killed in its probe:\n{output[-2000:]}"
    assert not (run_dir / "results.json").exists()


def without_seconds(results: dict) -> dict:
    return {**results, "train": {k: v for k, v in results["train"].items() if k != "seconds"}}


def test_kill_9_at_a_random_step_and_in_the_probe_then_resume_gives_the_uninterrupted_run(tmp_path):
    step = random.Random().randrange(4, 33)  # any step: the run dies between two checkpoints, or while writing one
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    done = start(straight)
    assert done.wait(300) == 0, done.communicate()[0][-2000:]

    kill_at_step(killed, step)
    assert 0 <= checkpoint_step(killed) < 40, f"killed after step {step}"  # a checkpoint, whole
    kill_in_the_probe(killed, "resume=auto")
    assert checkpoint_step(killed) == 40
    resumed = start(killed, "resume=auto")
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output[-2000:]

    results = {run: json.loads((run / "results.json").read_text()) for run in (straight, killed)}
    assert without_seconds(results[killed]) == without_seconds(results[straight]), f"killed after step {step}"
    rows = {run: list(csv.DictReader(open(run / "metrics.csv"))) for run in (straight, killed)}
    assert rows[killed] == rows[straight], f"killed after step {step}"
