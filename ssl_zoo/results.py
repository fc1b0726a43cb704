"""results.json: what each run writes (schema in docs/architecture.md), atomic writes, and the
comparison table across runs."""

import json
import os
import tempfile
from pathlib import Path

RESULTS_FILE = "results.json"
REQUIRED = ("method", "modality", "data", "model", "params", "seed", "train", "probe")


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write to a temporary file in the same folder, then rename: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2, sort_keys=False)
            f.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run_dir_of(checkpoint: str | Path) -> Path:
    """The run folder of a checkpoint (<run dir>/checkpoints/last.ckpt, or a checkpoint beside results)."""
    ckpt = Path(checkpoint)
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent


def add_to_results(checkpoint: str | Path, key: str, value) -> Path:
    """Merge value into results.json[key][...] of the checkpoint's run (created if there is none)."""
    path = run_dir_of(checkpoint) / RESULTS_FILE
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError):
        results = {}
    merged = results.get(key) or {}
    merged.update(value)
    results[key] = merged
    write_json_atomic(path, results)
    return path


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


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def leaderboard(rows: list[dict]) -> str:
    """A Markdown table per (modality, data, probe task), best linear accuracy first."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["modality"], r["data"], r["probe"].get("task") if r["probe"] else None), []).append(r)
    out = []
    for (modality, data, task), group in sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))):
        out.append(f"### {modality} · {data} · probe task: {task or 'none (unlabelled data)'}\n")
        out.append("| method | model | params | steps | seconds | linear % | kNN % | random-init linear % | gain |")
        out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        group.sort(key=lambda r: -((r["probe"] or {}).get("linear_acc") or 0))
        for r in group:
            p = r["probe"] or {}
            lin, rnd = p.get("linear_acc"), p.get("random_init_linear_acc")
            gain = "-" if lin is None or rnd is None else f"{100 * (lin - rnd):+.1f}"
            train = r.get("train") or {}
            seconds = "-" if train.get("seconds") is None else f"{train['seconds']:.0f}"
            out.append(
                f"| {r['method']} | {r['model']} | {r['params'] / 1e6:.2f}M | {train.get('steps', '-')} | "
                f"{seconds} | {_pct(lin)} | {_pct(p.get('knn_acc'))} | {_pct(rnd)} | {gain} |"
            )
        out.append("")
    return "\n".join(out)
