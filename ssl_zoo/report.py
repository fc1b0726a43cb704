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
from ssl_zoo.results import experiments, find_results, group_order, icl_groups, scaling_rows, seed_groups
from ssl_zoo.stats import t_interval, wilson_interval


def pct(x, sign: str = "") -> str:
    """A fraction as a percentage with one decimal ("-" when unknown)."""
    return "-" if x is None else f"{100 * x:.1f}{sign}"


# --- one run ------------------------------------------------------------------------------------
def summary(results: dict, run_dir: Path) -> str:
    """What `ssl-zoo train` and `ssl-zoo probe` print at the end: the run's figures, a few lines."""
    t, p, extra = results["train"], results["probe"] or {}, results.get("extra") or {}
    lines = [f"\n{results['method']} on {results['data']} ({results['model']}, {results['params'] / 1e6:.2f}M params)"]
    if t.get("steps") is not None:
        loss = "none (no step)" if t["final_loss"] is None else f"{t['final_loss']:.4f}"
        lines.append(f"  trained {t['steps']} steps in {t['seconds']:.0f}s, final loss {loss}")
    if "val_perplexity" in extra:
        best = f", best {extra['val_best_loss']:.3f} over the run" if "val_best_loss" in extra else ""
        lines.append(f"  validation loss {extra['val_loss']:.3f} nats/token at the end{best} (perplexity {extra['val_perplexity']:.1f}); "
                     f"unigram baseline {extra['unigram_entropy']:.3f}")
    if "val_masked_acc" in extra:
        lines.append(f"  held-out masked tokens: top-1 {pct(extra['val_masked_acc'], '%')} "
                     f"(unigram baseline {pct(extra['unigram_top1_acc'], '%')})")
    if monitor := extra.get("knn_monitor"):
        lines.append(f"  kNN monitor (every {monitor['every_n_steps']} steps): best {pct(monitor['best_knn_acc'], '%')} at step "
                     f"{monitor['best_step']}, last {pct(monitor['last_knn_acc'], '%')} (the best is a look at the test set, not a result)")
    if "sample" in extra:
        lines.append("  greedy sample:\n    " + extra["sample"].strip("\n").replace("\n", "\n    "))
    if p:
        lines.append(f"  probe '{p['task']}' ({p['num_classes']} classes): linear {pct(p['linear_acc'], '%')}, "
                     f"kNN {pct(p['knn_acc'], '%')}, random-init linear {pct(p['random_init_linear_acc'], '%')}")
    if leak := p.get("leak"):
        lines.append(f"  probe test {leak['unit']}: {leak['in_pretraining']} of {leak['test_items']} occur in what pretraining reads")
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
def require_seeds(flat: list[dict], at_least: int) -> None:
    """Refuse a comparison that is asked for intervals when some experiment has fewer seeds."""
    for f in flat:
        if len(f["seeds"]) < at_least:
            seeds = ", ".join(map(str, f["seeds"]))
            raise UserError(f"{f['method']} on {f['data']} ({f['model']}) has {len(f['seeds'])} seed(s) ({seeds}), fewer than the "
                            f"{at_least} asked for (an interval needs two); run it with `ssl-zoo train -m ... seed=0,1,2`")


def cell(stat: dict | None, scale: float = 100, digits: int = 1, sign: str = "") -> str:
    """A figure over seeds (in percent by default): "mean ± half-width of its 95% interval", the mean
    alone for one seed, "-" when unknown."""
    if stat is None:
        return "-"
    mean = f"{scale * stat['mean']:{sign}.{digits}f}"
    return mean if stat["ci95"] is None else f"{mean} ± {scale * (stat['ci95'][1] - stat['mean']):.{digits}f}"


def excludes_zero(stat: dict | None) -> str:
    """Whether a gain's 95% interval excludes 0 (the gain is real at that confidence)."""
    if stat is None:
        return "-"
    if stat["ci95"] is None:
        return "one seed"
    low, high = stat["ci95"]
    return "yes" if low > 0 or high < 0 else "no"


def above_zero(stat: dict | None) -> bool:
    """Whether a figure's 95% interval over seeds lies wholly above 0 (a real gain, not a real loss)."""
    return bool(stat and stat["ci95"] and stat["ci95"][0] > 0)


def leaderboard(rows: list[dict]) -> str:
    """A Markdown table per (modality, data, probe task), best linear accuracy first."""
    out, group = ["Each figure: the mean over seeds ± the half-width of its 95% t-interval (one seed: the figure alone)."], None
    for f in experiments(rows):
        if (f["modality"], f["data"], f["task"], f["protocol"]) != group:
            group = (f["modality"], f["data"], f["task"], f["protocol"])
            protocol = "" if f["protocol"] == "default" else f" · probe protocol: {f['protocol']}"
            out.append(f"\n### {f['modality']} · {f['data']} · probe task: {f['task'] or 'none (unlabelled data)'}{protocol}\n")
            out.append("| method | model | params | steps | seeds | seconds | linear % | kNN % | random-init linear % | "
                       "gain | gain's CI excludes 0 | other baselines, linear % | RankMe | uniformity | alignment |")
            out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|")
        fig = f["figures"]
        seconds = "-" if fig["seconds"] is None else f"{fig['seconds']['mean']:.0f}"
        steps = "-" if f["steps"] is None else f["steps"]
        others = ", ".join(f"{name[: -len('_linear_acc')]} {cell(stat)}" for name, stat in fig.items()
                           if name.endswith("_linear_acc") and name != "random_init_linear_acc") or "-"
        method = f"{f['method']} (baseline)" if f.get("baseline") else f["method"]
        out.append(f"| {method} | {f['model']} | {f['params'] / 1e6:.2f}M | {steps} | {len(f['seeds'])} | {seconds} | "
                   f"{cell(fig['linear_acc'])} | {cell(fig['knn_acc'])} | {cell(fig['random_init_linear_acc'])} | "
                   f"{cell(fig['gain'], sign='+')} | {excludes_zero(fig['gain'])} | {others} | "
                   f"{cell(fig['rankme'], 1)} | {cell(fig['uniformity'], 1, 2)} | {cell(fig['alignment'], 1, 2)} |")
    return "\n".join(out) + "\n"


CSV_FIGURES = ("linear_acc", "knn_acc", "random_init_linear_acc", "gain", "final_loss", "rankme", "uniformity", "alignment",
               "class_alignment")


def leaderboard_csv(rows: list[dict]) -> str:
    """The leaderboard as CSV, accuracies as fractions: for each figure its mean over seeds, and with
    two seeds or more its sd and 95% interval; each method baseline gets its own column."""
    flat = experiments(rows)
    baselines = sorted({name for f in flat for name in f["figures"]
                        if name.endswith("_linear_acc") and name not in CSV_FIGURES})
    columns = ["modality", "data", "task", "protocol", "method", "model", "params", "steps", "seeds", "seconds"]
    for name in CSV_FIGURES:
        columns += [name, f"{name}_sd", f"{name}_ci_low", f"{name}_ci_high"]
    columns += ["gain_ci_excludes_0", *baselines, "paths"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for f in flat:
        fig = f["figures"]
        line = {k: f[k] for k in ("modality", "data", "task", "protocol", "method", "model", "params", "steps")}
        line.update(seeds=" ".join(map(str, f["seeds"])), paths=";".join(map(str, f["paths"])),
                    seconds=fig["seconds"] and fig["seconds"]["mean"], gain_ci_excludes_0=excludes_zero(fig["gain"]))
        for name in CSV_FIGURES:
            stat = fig.get(name) or {}
            low, high = stat.get("ci95") or (None, None)
            line.update({name: stat.get("mean"), f"{name}_sd": stat.get("sd"), f"{name}_ci_low": low, f"{name}_ci_high": high})
        line.update({name: (fig.get(name) or {}).get("mean") for name in baselines})
        writer.writerow(line)
    return buffer.getvalue()


GRID_ROWS = ("masked", "autoregressive", "joint-embedding")  # the objectives
GRID_COLUMNS = ("text", "speech", "image")  # the modalities


def grid_cells(rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """{(objective, modality): its experiments (seeds pooled), largest mean gain over random init first}."""
    cells: dict[tuple[str, str], list[dict]] = {}
    for f in experiments(rows):
        if f["objective"] in GRID_ROWS and f["modality"] in GRID_COLUMNS and f["figures"]["gain"] is not None:
            cells.setdefault((f["objective"], f["modality"]), []).append(f)
    gain = lambda f: f["figures"]["gain"]["mean"]  # noqa: E731
    return {key: sorted(found, key=gain, reverse=True) for key, found in cells.items()}


def grid_table(rows: list[dict]) -> str:
    """Markdown: objectives down, modalities across; in each cell every experiment of that objective
    and modality, its probe accuracy and its gain over random init (mean ± 95% interval over seeds)."""
    cells = grid_cells(rows)
    out = ["The grid: linear probe accuracy and gain over the random-init encoder, mean ± the half-width of the 95% "
           "t-interval over seeds (n seeds); ✓: the gain's interval lies above 0.", "",
           "| objective | " + " | ".join(GRID_COLUMNS) + " |", "|---|" + "---|" * len(GRID_COLUMNS)]
    for objective in GRID_ROWS:
        entries = []
        for modality in GRID_COLUMNS:
            found = cells.get((objective, modality), [])
            entries.append("<br>".join(
                f"{f['method']} ({f['model']}, {f['data']}): {cell(f['figures']['linear_acc'])}%, gain "
                f"{cell(f['figures']['gain'], sign='+')} (n={len(f['seeds'])})" + (" ✓" if above_zero(f["figures"]["gain"]) else "")
                for f in found) or "-")
        out.append(f"| {objective} | " + " | ".join(entries) + " |")
    winners = grid_winners(cells)
    return "\n".join(out + (["", "Each modality's best objective by mean probe accuracy, and its lead over the next "
                              "objective on the same data and probe task:", *winners] if winners else [])) + "\n"


def grid_winners(cells: dict[tuple[str, str], list[dict]]) -> list[str]:
    """One line per modality and (data, probe task, protocol) that two objectives or more ran: the
    objective whose best experiment has the highest mean probe accuracy, and its lead over the next
    objective's best as the paired difference over the seeds both ran (mean ± 95% t-interval), a win
    only when the interval lies above 0. Each objective is represented by its best experiment, a choice
    made on the same seeds, which the interval does not account for."""
    linear = lambda f: f["figures"]["linear_acc"]["mean"]  # noqa: E731 (a grid cell's experiments all have one)
    per_seed = lambda f: {seed: run["linear_acc"] for seed, run in zip(f["seeds"], f["per_run"]) if run["linear_acc"] is not None}  # noqa: E731
    lines = []
    for modality in GRID_COLUMNS:
        groups: dict[tuple, dict[str, dict]] = {}  # (data, task, protocol) -> {objective: its best experiment}
        for (objective, m), found in cells.items():
            if m != modality:
                continue
            for f in found:
                best = groups.setdefault((f["data"], f["task"], f["protocol"]), {})
                if objective not in best or linear(f) > linear(best[objective]):
                    best[objective] = f
        for (data, task, _), best in groups.items():
            if len(best) < 2:
                continue
            (winner, first), (runner_up, second) = sorted(best.items(), key=lambda pair: linear(pair[1]), reverse=True)[:2]
            head = f"- {modality}" + (f" ({data}, {task})" if len(groups) > 1 else "") + f": {winner} ({first['method']}, " \
                   f"{cell(first['figures']['linear_acc'])}%) ahead of {runner_up} ({second['method']})"
            a, b = per_seed(first), per_seed(second)
            if not (seeds := sorted(set(a) & set(b))):
                lines.append(f"{head}: no seeds in common to pair")
                continue
            lead = t_interval([a[s] - b[s] for s in seeds])
            verdict = ("no interval from one seed" if lead["ci95"] is None else "a win at 95%" if above_zero(lead) else
                       f"behind {runner_up} on these seeds at 95%" if lead["ci95"][1] < 0 else "its interval includes 0: not a win at 95%")
            lines.append(f"{head} by {cell(lead, sign='+')} points, paired over seed{'s' * (len(seeds) > 1)} "
                         f"{', '.join(map(str, seeds))}: {verdict}")
    return lines


def scaling_table(rows) -> str:
    """Markdown: pooled in-context accuracy per run (smallest first), group and shots (rows: results.scaling_rows)."""
    runs: dict[tuple, dict] = {}
    for params, label, group, k, correct, n in rows:
        runs.setdefault((label, f"{params / 1e6:.2f}M"), {}).setdefault(group, {})[k] = (correct, n)
    return group_table(runs, ("model", "params"))


def write_comparison(rows: list[dict], out_dir: str | Path, plot: bool = False, grid: bool = False) -> list[Path]:
    """comparison.md and comparison.csv in out_dir; with plot, the PNGs of ssl_zoo/plots.py too; with
    grid, grid.md and its heat map grid.png."""
    out_dir = Path(out_dir)
    written = [atomic_write(out_dir / "comparison.md", leaderboard(rows)),
               atomic_write(out_dir / "comparison.csv", leaderboard_csv(rows))]
    if grid:
        written.append(atomic_write(out_dir / "grid.md", grid_table(rows)))
    if plot or grid:
        from ssl_zoo import plots  # matplotlib only when pictures are asked for (it picks a backend on import)

        written += plots.comparison_plots(rows, out_dir) if plot else []
        written += [plots.grid_heatmap(grid_cells(rows), GRID_ROWS, GRID_COLUMNS, out_dir / "grid.png")] if grid else []
    return written


def compare_runs(paths: list, out=None, plot: bool = False, min_seeds: int = 1,
                 grid: bool = False) -> tuple[str, list[Path], list[str]]:
    """`ssl-zoo compare`: (leaderboard, files written, problems found) for every results.json under
    paths, runs that differ only in seed pooled; comparison.md/.csv (and with plot, the PNGs; with
    grid, grid.md and grid.png, the grid table after the leaderboard) go to out (default: the one
    folder given, else .). min_seeds: refuse unless every experiment has as many."""
    paths = [str(p) for p in paths]
    rows, problems = find_results(paths)
    if not rows:
        if problems:  # files were found, and none could be read
            raise UserError(f"no results.json read under {', '.join(paths)}: {problems[0]}"
                            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
        raise UserError(f"no results.json found under {', '.join(paths)}; run `ssl-zoo train` first")
    require_seeds(experiments(rows), min_seeds)
    out = out or (paths[0] if len(paths) == 1 and Path(paths[0]).is_dir() else ".")
    table = leaderboard(rows) + ("\n" + grid_table(rows) if grid else "")
    return table, write_comparison(rows, out, plot=plot, grid=grid), problems + seed_groups(rows)[1]


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
    sweep folder (`experiment=zoo_demo` uses it; `experiment=grid` with grid: true, the grid too)."""

    def __init__(self, grid: bool = False):
        self.grid = grid

    def on_multirun_end(self, config, **kwargs) -> None:
        folder = Path(config.hydra.sweep.dir)
        try:
            table, written, problems = compare_runs([folder], folder, plot=True, grid=self.grid)
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
