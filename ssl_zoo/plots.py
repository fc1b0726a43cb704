"""Pictures for comparing runs (matplotlib, written atomically as PNG): training loss curves from each
run's metrics.csv, probe accuracy bars with the baselines (over seeds, with their intervals), in-context accuracy against shots and
against model size, and the t-SNE maps of `ssl-zoo embed-plot`."""

import csv
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402

from ssl_zoo.atomic import atomic_write  # noqa: E402
from ssl_zoo.results import experiments, group_order, icl_groups, run_label, scaling_rows  # noqa: E402
from ssl_zoo.run.folder import RunFolder  # noqa: E402
from ssl_zoo.stats import wilson_interval  # noqa: E402


def save_figure(fig, path: Path, dpi: int = 110) -> Path:
    """Write the figure (its format from the file name), atomically: never half a PNG."""
    path = Path(path)
    try:
        return atomic_write(path, lambda f: fig.savefig(f, format=path.suffix.lstrip("."), dpi=dpi))
    finally:
        plt.close(fig)


def panels(count: int, width: float = 4.2, height: float = 3.2, max_cols: int = 3, **kwargs):
    """A figure with `count` axes in rows of up to max_cols (unused cells hidden)."""
    ncols = min(max_cols, max(1, count))
    nrows = math.ceil(max(1, count) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, **kwargs)
    axes = axes.ravel()
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, axes[:count]


def method_label(row: dict) -> str:
    return f"{row['method']} ({row['model']})"


def read_loss_curve(run_dir: Path) -> tuple[list[int], list[float]]:
    """(steps, train/loss) from a run's metrics.csv (Lightning's CSV logger); empty if there is none."""
    path = RunFolder(run_dir).metrics
    steps, losses = [], []
    if not path.is_file():
        return steps, losses
    with open(path, newline="") as f:
        for line in csv.DictReader(f):
            if line.get("train/loss"):
                steps.append(int(line["step"]))
                losses.append(float(line["train/loss"]))
    return steps, losses


def loss_curves(rows: list[dict], path: Path) -> Path | None:
    """One panel per modality, one line per run: the training loss against steps."""
    curves: dict[str, list] = {}
    for row in rows:
        steps, losses = read_loss_curve(Path(row["path"]).parent)
        if steps:
            curves.setdefault(row["modality"], []).append((method_label(row), steps, losses))
    if not curves:
        return None
    fig, axes = panels(len(curves))
    for ax, (modality, runs) in zip(axes, sorted(curves.items())):
        for label, steps, losses in runs:
            ax.plot(steps, losses, label=label, linewidth=1.2)
        ax.set_title(f"{modality}: training loss", fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def probe_bars(rows: list[dict], path: Path) -> Path | None:
    """One panel per (data, probe task): for each experiment (its seeds pooled: results.experiments),
    its mean linear probe accuracy beside the random-init encoder's and the method's own baselines
    (e.g. log-mel), with the 95% interval over seeds as an error bar where there are two or more."""
    groups: dict[tuple, list[dict]] = {}
    for f in experiments(rows):
        if f["task"] is not None and f["figures"]["linear_acc"] is not None:
            groups.setdefault((f["data"], f["task"]), []).append(f)
    if not groups:
        return None
    fig, axes = panels(len(groups), width=4.8)
    palette = ["tab:orange", "tab:green", "tab:purple", "tab:brown"]  # the methods' own baselines
    for ax, ((data, task), runs) in zip(axes, sorted(groups.items())):
        baselines = sorted({n for f in runs for n in f["figures"] if n.endswith("_linear_acc") and n != "random_init_linear_acc"})
        names = ["linear_acc", "random_init_linear_acc", *baselines]
        width = 0.8 / len(names)
        for j, name in enumerate(names):
            stats = [f["figures"].get(name) for f in runs]
            means = [float("nan") if s is None else 100 * s["mean"] for s in stats]
            errors = [0.0 if s is None or s["ci95"] is None else 100 * (s["ci95"][1] - s["mean"]) for s in stats]
            label = {"linear_acc": "pretrained", "random_init_linear_acc": "random init"}.get(name, name[: -len("_linear_acc")])
            ax.bar([i + (j - (len(names) - 1) / 2) * width for i in range(len(runs))], means, width, yerr=errors, capsize=2,
                   label=label, color={"linear_acc": "tab:blue", "random_init_linear_acc": "tab:gray"}.get(name, palette[(j - 2) % 4]))
        ax.set_xticks(range(len(runs)), [f"{f['method']}\n({len(f['seeds'])} seeds)" if len(f["seeds"]) > 1 else f["method"]
                                         for f in runs], rotation=20, fontsize=8)
        ax.set_ylabel("linear probe accuracy %")
        ax.set_title(f"{data} · {task}", fontsize=10)
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def icl_shots(rows: list[dict], path: Path) -> Path | None:
    """One panel per group of in-context tasks (results.icl_groups): pooled accuracy against the number
    of demonstrations, one line per run, with 95% intervals."""
    groups: dict[str, list] = {}
    for row in sorted(rows, key=lambda r: r["params"]):
        for group, by_k in icl_groups(row).items():
            shots = sorted(by_k)
            accuracy, low, high = zip(*[interval(*by_k[k]) for k in shots])
            groups.setdefault(group, []).append((f"{run_label(row)} ({row['params'] / 1e6:.2g}M)", shots, accuracy, low, high))
    if not groups:
        return None
    fig, axes = panels(len(groups), width=3.8, height=3.0, sharey=True)
    for ax, (group, lines) in zip(axes, sorted(groups.items(), key=lambda item: group_order(item[0]))):
        for label, shots, accuracy, low, high in lines:
            ax.errorbar(shots, accuracy, yerr=[low, high], marker="o", capsize=2, label=label)
        ax.set_title(group, fontsize=10)
        ax.set_xlabel("demonstrations in the prompt (shots)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy % (95% CI)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def interval(correct: int, n: int) -> tuple[float, float, float]:
    """(accuracy %, distance to the lower and to the upper end of its 95% interval)."""
    lo, hi = wilson_interval(correct, n)
    return 100 * correct / n, 100 * (correct / n - lo), 100 * (hi - correct / n)


def comparison_plots(rows: list[dict], out_dir: Path) -> list[Path]:
    """Every picture the rows allow, in out_dir: loss_curves.png, probe_accuracy.png, icl_shots.png and,
    when runs of several sizes have in-context scores, icl_scaling.png."""
    out_dir = Path(out_dir)
    written = [loss_curves(rows, out_dir / "loss_curves.png"), probe_bars(rows, out_dir / "probe_accuracy.png"),
               icl_shots(rows, out_dir / "icl_shots.png")]
    scaling = scaling_rows(rows)
    if len({params for params, *_ in scaling}) > 1:
        written.append(scaling_plot(scaling, out_dir / "icl_scaling.png"))
    return [p for p in written if p is not None]


def scaling_plot(rows, path: Path) -> Path:
    """In-context accuracy against parameters, one panel per group of tasks and one line per number of
    shots (95% intervals), runs on other data (e.g. natural text only) as open markers beside them;
    last, the gain of k shots over 0 shots against parameters (rows: results.scaling_rows)."""
    import matplotlib.ticker

    groups = sorted({g for _, _, g, *_ in rows}, key=group_order)
    shots = sorted({k for _, _, _, k, *_ in rows})
    params = sorted({p for p, label, *_ in rows if "(" not in label}) or sorted({p for p, *_ in rows})
    colours = {k: f"C{i}" for i, k in enumerate(shots)}
    fig, axes = panels(len(groups) + 1, width=3.8, height=3.1)
    for ax, group in zip(axes, groups):
        for k in shots:
            for other in (False, True):  # the runs on icl_mix itself, then those on other data
                points = sorted((p, c, n) for p, label, g, kk, c, n in rows if g == group and kk == k and ("(" in label) == other)
                if points:
                    acc, low, high = zip(*[interval(c, n) for _, c, n in points])
                    ax.errorbar([p for p, _, _ in points], acc, yerr=[low, high], capsize=2, color=colours[k],
                                marker="o", mfc="none" if other else colours[k], ls="none" if other else "-",
                                label=f"{k}-shot" + (", other data" if other else ""))
        ax.set_title(group, fontsize=10)
        ax.set_ylabel("accuracy % (95% CI)")
    gain_ax = axes[-1]
    for group in groups:
        by = {(p, k): c / n for p, label, g, k, c, n in rows if g == group and "(" not in label}
        most = 4 if any(k == 4 for (_, k) in by) else max((k for (_, k) in by), default=0)
        xs = [p for p in params if (p, 0) in by and (p, most) in by]
        if most and xs:
            gain_ax.plot(xs, [100 * (by[(p, most)] - by[(p, 0)]) for p in xs], marker="o", label=f"{group}: {most} vs 0 shots")
    gain_ax.axhline(0, color="gray", lw=0.8)
    gain_ax.set_title("few-shot gain over 0-shot", fontsize=10)
    gain_ax.set_ylabel("points")
    for ax in axes:
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xticks(params, [f"{p / 1e6:.2g}M" for p in params])
        ax.set_xlabel("parameters")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    return save_figure(fig, path)


def embedding_maps(maps: dict[str, tuple], class_names: list[str], title: str, path: Path) -> Path:
    """Side-by-side 2-D maps {panel title: (points (N, 2), labels (N,))}, coloured by label."""
    fig, axes = panels(len(maps), width=5.0, height=4.6, max_cols=len(maps))
    cmap = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
    for ax, (name, (points, labels)) in zip(axes, maps.items()):
        for c, class_name in enumerate(class_names):
            chosen = labels == c
            ax.scatter(points[chosen, 0], points[chosen, 1], s=6, color=cmap(c % cmap.N), label=class_name)
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    if len(class_names) <= 20:
        axes[-1].legend(fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)


def grid_heatmap(cells: dict[tuple[str, str], list[dict]], objectives: tuple[str, ...], modalities: tuple[str, ...],
                 path: Path) -> Path:
    """The grid as a heat map: each cell coloured by its best method's mean gain over random init
    (points of linear probe accuracy), annotated with the method, the gain ± its 95% interval and n."""
    fig, ax = plt.subplots(figsize=(2.6 * len(modalities) + 1.5, 1.3 * len(objectives) + 1.2))
    gains = [[100 * cells[(o, m)][0]["figures"]["gain"]["mean"] if (o, m) in cells else float("nan") for m in modalities]
             for o in objectives]
    finite = [abs(g) for row in gains for g in row if g == g] or [1.0]
    image = ax.imshow(gains, cmap="RdYlGn", vmin=-max(finite), vmax=max(finite))
    for i, objective in enumerate(objectives):
        for j, modality in enumerate(modalities):
            if (objective, modality) not in cells:
                ax.text(j, i, "-", ha="center", va="center", color="gray")
                continue
            best = cells[(objective, modality)][0]
            gain = best["figures"]["gain"]
            interval = "" if gain["ci95"] is None else f" ± {100 * (gain['ci95'][1] - gain['mean']):.1f}"
            ax.text(j, i, f"{best['method']}\n{100 * gain['mean']:+.1f}{interval}\n(n={len(best['seeds'])})",
                    ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(modalities)), modalities)
    ax.set_yticks(range(len(objectives)), objectives)
    ax.set_title("gain over random init, linear probe points (best method per cell)", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return save_figure(fig, path)
