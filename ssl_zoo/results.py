"""results.json: what each run writes (schema in docs/architecture.md), atomic writes, and the
comparison table across runs."""

import json
import os
import tempfile
from pathlib import Path

from hydra.experimental.callback import Callback as HydraCallback

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


COLUMNS = ("modality", "data", "task", "method", "model", "params", "steps", "seconds", "linear_acc", "knn_acc",
           "random_init_linear_acc", "gain", "baselines", "path")


def leaderboard_rows(rows: list[dict]) -> list[dict]:
    """One flat record per run, grouped by (modality, data, probe task), best linear accuracy first
    within a group: the rows of the Markdown table and of the CSV."""
    flat = []
    for r in rows:
        p, train = r["probe"] or {}, r.get("train") or {}
        lin, rnd = p.get("linear_acc"), p.get("random_init_linear_acc")
        flat.append({
            "modality": r["modality"], "data": r["data"], "task": p.get("task"), "method": r["method"],
            "model": r["model"], "params": r["params"], "steps": train.get("steps"), "seconds": train.get("seconds"),
            "linear_acc": lin, "knn_acc": p.get("knn_acc"), "random_init_linear_acc": rnd,
            "gain": None if lin is None or rnd is None else lin - rnd,
            "baselines": {name: b.get("linear_acc") for name, b in (p.get("baselines") or {}).items()},
            "path": r.get("path"),
        })
    flat.sort(key=lambda f: (f["modality"], f["data"], str(f["task"]), -(f["linear_acc"] or 0)))
    return flat


def leaderboard(rows: list[dict]) -> str:
    """A Markdown table per (modality, data, probe task), best linear accuracy first."""
    out, group = [], None
    for f in leaderboard_rows(rows):
        if (f["modality"], f["data"], f["task"]) != group:
            group = (f["modality"], f["data"], f["task"])
            if out:
                out.append("")
            out.append(f"### {f['modality']} · {f['data']} · probe task: {f['task'] or 'none (unlabelled data)'}\n")
            out.append("| method | model | params | steps | seconds | linear % | kNN % | random-init linear % | gain | other baselines, linear % |")
            out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
        gain = "-" if f["gain"] is None else f"{100 * f['gain']:+.1f}"
        seconds = "-" if f["seconds"] is None else f"{f['seconds']:.0f}"
        steps = "-" if f["steps"] is None else f["steps"]
        others = ", ".join(f"{name} {_pct(acc)}" for name, acc in f["baselines"].items()) or "-"
        out.append(f"| {f['method']} | {f['model']} | {f['params'] / 1e6:.2f}M | {steps} | {seconds} | {_pct(f['linear_acc'])} | "
                   f"{_pct(f['knn_acc'])} | {_pct(f['random_init_linear_acc'])} | {gain} | {others} |")
    return "\n".join(out) + "\n"


def leaderboard_csv(rows: list[dict]) -> str:
    """The leaderboard as CSV, accuracies as fractions; each method baseline gets its own column."""
    import csv
    import io

    flat = leaderboard_rows(rows)
    names = sorted({name for f in flat for name in f["baselines"]})
    columns = [c for c in COLUMNS if c != "baselines"]
    columns[columns.index("gain") + 1 : columns.index("gain") + 1] = [f"{name}_linear_acc" for name in names]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for f in flat:
        writer.writerow({**{k: f[k] for k in columns if k in f}, **{f"{n}_linear_acc": f["baselines"].get(n) for n in names}})
    return buffer.getvalue()


def write_text_atomic(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_comparison(rows: list[dict], out_dir: str | Path, plot: bool = False) -> list[Path]:
    """comparison.md and comparison.csv in out_dir; with plot, the PNGs of ssl_zoo/plots.py too."""
    out_dir = Path(out_dir)
    written = [out_dir / "comparison.md", out_dir / "comparison.csv"]
    write_text_atomic(written[0], leaderboard(rows))
    write_text_atomic(written[1], leaderboard_csv(rows))
    if plot:
        from ssl_zoo import plots

        written += plots.comparison_plots(rows, out_dir)
    return written


def compare_runs(paths: list, out=None, plot: bool = False) -> tuple[str, list[Path], list[str]]:
    """`ssl-zoo compare`: (leaderboard, files written, problems found) for every results.json under
    paths; comparison.md/.csv (and with plot, the PNGs) go to out (default: the one folder given, else .)."""
    from ssl_zoo.errors import UserError

    paths = [str(p) for p in paths]
    rows, problems = find_results(paths)
    if not rows:
        raise UserError(f"no results.json found under {', '.join(paths)}; run `ssl-zoo train` first")
    out = out or (paths[0] if len(paths) == 1 and Path(paths[0]).is_dir() else ".")
    return leaderboard(rows), write_comparison(rows, out, plot=plot), problems


class ComparisonReport(HydraCallback):
    """Hydra callback: after a multirun, the leaderboard (comparison.md / .csv) and the plots in its
    sweep folder (`experiment=zoo_demo` uses it)."""

    def on_multirun_end(self, config, **kwargs) -> None:
        from ssl_zoo.errors import UserError

        folder = Path(config.hydra.sweep.dir)
        try:
            table, written, problems = compare_runs([folder], folder, plot=True)
        except UserError:
            print(f"no results under {folder}: no comparison")
            return
        for problem in problems:
            print(f"comparison: {problem}")
        print(table)
        for path in written:
            print(f"written: {path}")
