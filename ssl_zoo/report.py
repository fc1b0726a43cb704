"""Reports in words and tables: a run's summary, its in-context scores, and the comparisons across
runs that `ssl-zoo compare` (and a sweep's Hydra callbacks) write: the leaderboard (Markdown and CSV)
and the ICL scaling table, with the pictures of plots.py beside them (imported only then: matplotlib
picks its backend on import, which a notebook that trains must not have chosen for it)."""

import csv
import io
from pathlib import Path

from hydra.experimental.callback import Callback as HydraCallback

from ssl_zoo.atomic import atomic_write
from ssl_zoo.errors import UserError
from ssl_zoo.results import find_results, group_order, icl_groups, scaling_rows
from ssl_zoo.stats import wilson_interval


def pct(x, sign: str = "") -> str:
    """A fraction as a percentage with one decimal ("-" when unknown)."""
    return "-" if x is None else f"{100 * x:.1f}{sign}"


# --- one run ------------------------------------------------------------------------------------
def summary(results: dict, run_dir: Path) -> str:
    """What `ssl-zoo train` and `ssl-zoo probe` print at the end: the run's figures, a few lines."""
    t, p, extra = results["train"], results["probe"] or {}, results.get("extra") or {}
    lines = [f"\n{results['method']} on {results['data']} ({results['model']}, {results['params'] / 1e6:.2f}M params)"]
    if t.get("steps") is not None:
        lines.append(f"  trained {t['steps']} steps in {t['seconds']:.0f}s, final loss {t['final_loss']:.4f}")
    if "val_perplexity" in extra:
        lines.append(f"  validation loss {extra['val_loss']:.3f} nats/token (perplexity {extra['val_perplexity']:.1f}); "
                     f"unigram baseline {extra['unigram_entropy']:.3f}")
    if "val_masked_acc" in extra:
        lines.append(f"  held-out masked tokens: top-1 {pct(extra['val_masked_acc'], '%')} "
                     f"(unigram baseline {pct(extra['unigram_top1_acc'], '%')})")
    if "sample" in extra:
        lines.append("  greedy sample:\n    " + extra["sample"].strip("\n").replace("\n", "\n    "))
    if p:
        lines.append(f"  probe '{p['task']}' ({p['num_classes']} classes): linear {pct(p['linear_acc'], '%')}, "
                     f"kNN {pct(p['knn_acc'], '%')}, random-init linear {pct(p['random_init_linear_acc'], '%')}")
    for name, scores in (p.get("baselines") or {}).items():
        lines.append(f"  baseline '{name}' features: linear {pct(scores['linear_acc'], '%')}, kNN {pct(scores['knn_acc'], '%')}")
    if "layer_weights" in p.get("chosen", {}):
        lines.append("  learned layer weights (embeddings first): " + " ".join(f"{w:.2f}" for w in p["chosen"]["layer_weights"]))
    if "finetune_acc" in p:
        lines.append(f"  fine-tuned: {pct(p['finetune_acc'], '%')}, from random init {pct(p.get('random_init_finetune_acc'), '%')}")
    lines.append(f"  run dir: {run_dir}")
    return "\n".join(lines)


def icl_table(icl: dict) -> str:
    """Markdown of a run's in-context scores (evaluate_gpt's keys): one row per (task, shots), then
    the groups pooled with 95% intervals, the contamination report and the control labels."""
    tasks = (icl.get("icl_meta") or {}).get("tasks", {})
    lines = ["| task | split | shots | n | exact match % (95% CI) | acc % | acc_norm % |", "|---|---|---:|---:|---|---:|---:|"]
    for task, by_k in icl["icl"].items():
        for k, row in by_k.items():
            lo, hi = row["exact_match_ci95"]
            lines.append(f"| {task} | {tasks.get(task, {}).get('split', '-')} | {k} | {row['n']} | {pct(row['exact_match'])} "
                         f"({pct(lo)}-{pct(hi)}) | {pct(row.get('acc'))} | {pct(row.get('acc_norm'))} |")
    lines += ["", group_table({("this run",): icl_groups(icl)}, ("run",))]
    skipped: dict[int, list[str]] = {}
    for task, meta in tasks.items():
        for k in meta.get("skipped_shots", []):
            skipped.setdefault(k, []).append(task)
    for k, names in sorted(skipped.items()):
        lines.append(f"\n{k} shots left out, the prompts longer than the context, for {len(names)} of {len(tasks)} tasks: "
                     + ", ".join(names))
    checked = {t: m["contamination"] for t, m in tasks.items() if "contamination" in m}
    if checked:
        dirty = {t: c for t, c in checked.items() if c["line"] or c["answer"]}
        lines.append(f"\ncontamination (queries whose whole line / answer occurs in the training text): "
                     + (", ".join(f"{t} {pct(c['line'])}% / {pct(c['answer'])}%" for t, c in dirty.items())
                        if dirty else f"none in any of the {len(checked)} tasks"))
    return "\n".join(lines)


def group_table(runs: dict[tuple, dict[str, dict[int, tuple[int, int]]]], heads: tuple[str, ...]) -> str:
    """Markdown: for each run and group, pooled accuracy per number of shots with its 95% Wilson
    interval, and the gain of 4 shots (or the most there are) over 0 shots (runs: {the run's cells
    under heads: results.icl_groups(...)}). A shot count that some tasks' prompts do not fit is pooled
    over the tasks it fits (the table below the tasks says which)."""
    shots = sorted({k for groups in runs.values() for by_k in groups.values() for k in by_k})
    head = "| " + " | ".join(heads) + " | group | " + " | ".join(f"{k}-shot % (95% CI)" for k in shots) + " | gain, 4 over 0 shots |"
    lines = [head, "|" + "---|" * (len(heads) + 1 + len(shots)) + "---:|"]
    for name, groups in runs.items():
        for group, by_k in sorted(groups.items(), key=lambda item: group_order(item[0])):
            cells = []
            for k in shots:
                if k not in by_k:
                    cells.append("-")
                    continue
                correct, n = by_k[k]
                lo, hi = wilson_interval(correct, n)
                cells.append(f"{pct(correct / n)} ({pct(lo)}-{pct(hi)})")
            k = 4 if 4 in by_k else max(by_k)
            gain = f"{100 * (by_k[k][0] / by_k[k][1] - by_k[0][0] / by_k[0][1]):+.1f}" if 0 in by_k and k else "-"
            lines.append("| " + " | ".join(name) + f" | {group} | " + " | ".join(cells) + f" | {gain} |")
    return "\n".join(lines)


# --- across runs --------------------------------------------------------------------------------
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
        others = ", ".join(f"{name} {pct(acc)}" for name, acc in f["baselines"].items()) or "-"
        out.append(f"| {f['method']} | {f['model']} | {f['params'] / 1e6:.2f}M | {steps} | {seconds} | {pct(f['linear_acc'])} | "
                   f"{pct(f['knn_acc'])} | {pct(f['random_init_linear_acc'])} | {gain} | {others} |")
    return "\n".join(out) + "\n"


def leaderboard_csv(rows: list[dict]) -> str:
    """The leaderboard as CSV, accuracies as fractions; each method baseline gets its own column."""
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


def scaling_table(rows) -> str:
    """Markdown: pooled in-context accuracy per run (smallest first), group and shots (rows: results.scaling_rows)."""
    runs: dict[tuple, dict] = {}
    for params, label, group, k, correct, n in rows:
        runs.setdefault((label, f"{params / 1e6:.2f}M"), {}).setdefault(group, {})[k] = (correct, n)
    return group_table(runs, ("model", "params"))


def write_comparison(rows: list[dict], out_dir: str | Path, plot: bool = False) -> list[Path]:
    """comparison.md and comparison.csv in out_dir; with plot, the PNGs of ssl_zoo/plots.py too."""
    out_dir = Path(out_dir)
    written = [atomic_write(out_dir / "comparison.md", leaderboard(rows)),
               atomic_write(out_dir / "comparison.csv", leaderboard_csv(rows))]
    if plot:
        from ssl_zoo import plots  # matplotlib only when pictures are asked for (it picks a backend on import)

        written += plots.comparison_plots(rows, out_dir)
    return written


def compare_runs(paths: list, out=None, plot: bool = False) -> tuple[str, list[Path], list[str]]:
    """`ssl-zoo compare`: (leaderboard, files written, problems found) for every results.json under
    paths; comparison.md/.csv (and with plot, the PNGs) go to out (default: the one folder given, else .)."""
    paths = [str(p) for p in paths]
    rows, problems = find_results(paths)
    if not rows:
        raise UserError(f"no results.json found under {', '.join(paths)}; run `ssl-zoo train` first")
    out = out or (paths[0] if len(paths) == 1 and Path(paths[0]).is_dir() else ".")
    return leaderboard(rows), write_comparison(rows, out, plot=plot), problems


def write_scaling_report(folder: str | Path) -> tuple[Path, Path] | None:
    """icl_scaling.md and icl_scaling.png in folder, from the results.json files under it."""
    folder = Path(folder)
    results, _ = find_results([str(folder)])
    rows = scaling_rows(results)
    if not rows:
        print(f"no ICL results under {folder}: no scaling report")
        return None
    from ssl_zoo import plots

    table = atomic_write(folder / "icl_scaling.md", scaling_table(rows) + "\n")
    plot = plots.scaling_plot(rows, folder / "icl_scaling.png")
    print(scaling_table(rows))
    print(f"written: {table}, {plot}")
    return table, plot


class ComparisonReport(HydraCallback):
    """Hydra callback: after a multirun, the leaderboard (comparison.md / .csv) and the plots in its
    sweep folder (`experiment=zoo_demo` uses it)."""

    def on_multirun_end(self, config, **kwargs) -> None:
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


class ScalingReport(HydraCallback):
    """Hydra callback: after a multirun, the ICL scaling table and plot in its sweep folder
    (`experiment=icl_scaling` uses it)."""

    def on_multirun_end(self, config, **kwargs) -> None:
        write_scaling_report(config.hydra.sweep.dir)
