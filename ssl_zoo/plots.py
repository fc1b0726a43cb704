"""Pictures for comparing runs (matplotlib, written atomically as PNG): training loss curves from each
run's metrics.csv, probe accuracy bars with the baselines, in-context accuracy against shots and
against model size, and the t-SNE maps of `ssl-zoo embed-plot`."""

import csv
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402

from ssl_zoo.atomic import atomic_write  # noqa: E402
from ssl_zoo.results import primary_metric, scaling_rows  # noqa: E402


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


def run_label(row: dict) -> str:
    return f"{row['method']} ({row['model']})"


def read_loss_curve(run_dir: Path) -> tuple[list[int], list[float]]:
    """(steps, train/loss) from a run's metrics.csv (Lightning's CSV logger); empty if there is none."""
    path = run_dir / "metrics.csv"
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
            curves.setdefault(row["modality"], []).append((run_label(row), steps, losses))
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
    """One panel per (data, probe task): for each run, its linear probe accuracy beside the
    random-init encoder's and the method's own baselines (e.g. log-mel)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row["probe"]:
            groups.setdefault((row["data"], row["probe"]["task"]), []).append(row)
    if not groups:
        return None
    fig, axes = panels(len(groups), width=4.8)
    palette = ["tab:orange", "tab:green", "tab:purple", "tab:brown"]  # the methods' own baselines
    for ax, ((data, task), runs) in zip(axes, sorted(groups.items())):
        names = ["pretrained", "random init"] + sorted({b for r in runs for b in (r["probe"].get("baselines") or {})})
        width = 0.8 / len(names)
        for j, name in enumerate(names):
            values = []
            for r in runs:
                p = r["probe"]
                value = {"pretrained": p.get("linear_acc"), "random init": p.get("random_init_linear_acc")}.get(
                    name, (p.get("baselines") or {}).get(name, {}).get("linear_acc"))
                values.append(float("nan") if value is None else 100 * value)
            ax.bar([i + (j - (len(names) - 1) / 2) * width for i in range(len(runs))], values, width,
                   label=name, color={"pretrained": "tab:blue", "random init": "tab:gray"}.get(name, palette[(j - 2) % 4]))
        ax.set_xticks(range(len(runs)), [r["method"] for r in runs], rotation=20, fontsize=8)
        ax.set_ylabel("linear probe accuracy %")
        ax.set_title(f"{data} · {task}", fontsize=10)
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def icl_shots(rows: list[dict], path: Path) -> Path | None:
    """One panel per in-context task: accuracy against the number of demonstrations, one line per model."""
    tasks: dict[str, list] = {}
    for row in sorted(rows, key=lambda r: r["params"]):
        for task, by_k in (row.get("icl") or {}).items():
            shots = sorted(by_k, key=int)
            tasks.setdefault(task, []).append((f"{row['model']} ({row['params'] / 1e6:.2g}M)", [int(k) for k in shots],
                                               [100 * primary_metric(by_k[k]) for k in shots]))
    if not tasks:
        return None
    fig, axes = panels(len(tasks), width=3.6, height=3.0, sharey=True)
    for ax, (task, lines) in zip(axes, sorted(tasks.items())):
        for label, shots, accuracy in lines:
            ax.plot(shots, accuracy, marker="o", label=label)
        ax.set_title(task, fontsize=10)
        ax.set_xlabel("demonstrations in the prompt (shots)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy %")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


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
    """Mean accuracy over tasks against parameters, one line per number of shots; and per task
    (rows: results.scaling_rows)."""
    import matplotlib.ticker

    tasks = sorted({t for _, _, t, _, _ in rows})
    shots = sorted({k for *_, k, _ in rows})
    params = sorted({p for p, *_ in rows})
    names = ["mean over tasks"] + tasks
    fig, axes = panels(len(names), width=3.6, height=3.0, sharey=True)
    for ax, task in zip(axes, names):
        for k in shots:
            ys = []
            for p in params:
                vals = [a for q, _, t, kk, a in rows if q == p and kk == k and (t == task or task == "mean over tasks")]
                ys.append(100 * sum(vals) / len(vals) if vals else float("nan"))
            ax.plot(params, ys, marker="o", label=f"{k}-shot")
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xticks(params, [f"{p / 1e6:.2g}M" for p in params])
        ax.set_title(task, fontsize=10)
        ax.set_xlabel("parameters")
        ax.grid(alpha=0.3)
    for ax in axes[:: min(3, len(names))]:
        ax.set_ylabel("accuracy %")
    axes[0].legend(fontsize=8)
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
