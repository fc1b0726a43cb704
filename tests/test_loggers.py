"""logger=: metrics.csv always, and TensorBoard, Weights & Biases (offline without a key) or MLflow
beside it, each writing in the run folder; an unknown logger is one line."""

import csv
import struct

from ssl_zoo.run.train import train
from conftest import TINY, compose_train, one_error_line, run_cli

STEPS = ["trainer.max_steps=3", "trainer.log_every_n_steps=1", "probe.enabled=false"]


def csv_losses(run_dir) -> dict[int, float]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return {int(r["step"]): float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")}


def event_scalars(folder, tag: str) -> dict[int, float]:
    """{step: value} of one tag from the TensorBoard event files under folder, read record by record
    (TFRecord framing: length, its CRC, the Event proto, its CRC)."""
    from tensorboardX.proto.event_pb2 import Event

    values = {}
    for path in folder.rglob("events.out.tfevents.*"):
        data, at = path.read_bytes(), 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at:at + 8])
            event = Event.FromString(data[at + 12:at + 12 + length])
            at += 12 + length + 4
            values.update({event.step: v.simple_value for v in event.summary.value if v.tag == tag})
    return values


def test_tensorboard_logs_the_same_losses_as_metrics_csv(tmp_path):
    train(compose_train(*TINY, *STEPS, "logger=tensorboard"), tmp_path)
    from_csv, from_events = csv_losses(tmp_path), event_scalars(tmp_path / "tensorboard", "train/loss")
    assert len(from_csv) == 3 and from_events.keys() == from_csv.keys()
    assert all(abs(from_events[s] - from_csv[s]) < 1e-4 for s in from_csv)


def test_wandb_without_a_key_writes_an_offline_run_in_the_run_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc login either
    monkeypatch.setenv("WANDB_SILENT", "true")
    train(compose_train(*TINY, *STEPS, "logger=wandb"), tmp_path / "run")
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb")), "an offline run with its history file"
    assert len(csv_losses(tmp_path / "run")) == 3  # metrics.csv as always


def test_mlflow_keeps_a_file_store_in_the_run_folder(tmp_path):
    train(compose_train(*TINY, *STEPS, "logger=mlflow"), tmp_path)
    metric_files = list((tmp_path / "mlruns").rglob("metrics/train/loss"))
    assert len(metric_files) == 1
    steps = sorted(int(line.split()[2]) for line in metric_files[0].read_text().splitlines())
    assert steps == sorted(csv_losses(tmp_path))


def test_an_unknown_logger_is_one_line():
    result = run_cli("train", "logger=nope")
    assert "unknown logger 'nope'; choose one of: csv, mlflow, tensorboard, wandb" in one_error_line(result)
