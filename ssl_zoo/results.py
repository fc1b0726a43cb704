"""results.json: the record of one run, built in one place (`record`) next to its schema, written
atomically, found again across a tree of runs, and read back (the rows of ICL scaling).

    {"method", "modality", "data", "model", "params" (the encoder's), "seed",
     "train": {"steps", "seconds", "final_loss"},
     "probe": {"task", "num_classes", "linear_acc", "knn_acc", "random_init_linear_acc", ...} or null,
     "extra": {...}, "icl": {task: {shots: {...}}} (GPT runs with in-context scores)}
"""

import json
from pathlib import Path

from ssl_zoo.atomic import atomic_write

RESULTS_FILE = "results.json"
REQUIRED = ("method", "modality", "data", "model", "params", "seed", "train", "probe")
NO_TRAINING = {"steps": None, "seconds": None, "final_loss": None}  # a record whose training is not known


def encoder_parameters(method) -> int:
    """What `params` counts: the encoder's parameters (heads are left behind after pretraining)."""
    return sum(p.numel() for p in method.backbone.parameters())


def record(cfg, method, train: dict | None, probe: dict | None, extra: dict, icl: dict | None = None) -> dict:
    """The results.json of a run of config cfg (the run's own, or the one a saved run is probed with)."""
    results = {
        "method": cfg.method.name,
        "modality": method.modality,
        "data": cfg.data.name,
        "model": cfg.model.name,
        "params": encoder_parameters(method),
        "seed": cfg.seed,
        "train": train or dict(NO_TRAINING),
        "probe": probe,
        "extra": extra,
    }
    if icl is not None:
        results["icl"] = icl
    return results


def write_json(path: Path, payload: dict) -> Path:
    return atomic_write(path, json.dumps(payload, indent=2) + "\n")


def read_json(path: Path) -> dict:
    """A results file's contents, or {} when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def run_dir_of(checkpoint: str | Path) -> Path:
    """The run folder of a checkpoint (<run dir>/checkpoints/last.ckpt, or a checkpoint beside results)."""
    ckpt = Path(checkpoint)
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent


def add_to_results(checkpoint: str | Path, key: str, value) -> Path:
    """Merge value into results.json[key][...] of the checkpoint's run (created if there is none)."""
    path = run_dir_of(checkpoint) / RESULTS_FILE
    results = read_json(path)
    merged = results.get(key) or {}
    merged.update(value)
    results[key] = merged
    return write_json(path, results)


def find_results(paths: list[str]) -> tuple[list[dict], list[str]]:
    """Every results*.json under the given folders (or files): (valid results, problems found)."""
    rows, problems = [], []
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            files += sorted(p.rglob("results*.json"))
        else:
            problems.append(f"{p}: no such file or folder")
    for f in files:
        try:
            row = json.loads(f.read_text())
            missing = [k for k in REQUIRED if k not in row]
            if missing:
                raise ValueError(f"missing {', '.join(missing)}")
        except (ValueError, OSError) as e:
            problems.append(f"{f}: skipped, not a complete results file ({e})")
            continue
        row["path"] = str(f)
        rows.append(row)
    return rows, problems


def primary_metric(row: dict) -> float:
    """An ICL task's headline score: choice accuracy where it has choices, else exact match."""
    return row["acc"] if "acc" in row else row["exact_match"]


def scaling_rows(results: list[dict]) -> list[tuple[int, str, str, int, float]]:
    """(params, model, task, shots, accuracy) for every run that has ICL scores, smallest model first."""
    rows = []
    for r in results:
        for task, by_k in (r.get("icl") or {}).items():
            rows += [(r["params"], r["model"], task, int(k), primary_metric(row)) for k, row in by_k.items()]
    return sorted(rows)
