"""Print, as markdown, the same checkpoints probed with two L2 penalty sweeps side by side: per method, the
linear probe accuracy and the gain over the random-init encoder (mean ± 95% t-interval over the seeds),
the paired difference (new sweep minus old) and the penalties each chose. The README's table is

    python results/probe_sweeps.py results/default_budgets --old results/default_budgets_old_sweep
"""

import argparse
import json
from pathlib import Path

from ssl_zoo.stats import t_interval


def runs(folder: Path) -> dict[tuple[str, str], dict[int, dict]]:
    """{(modality, method): {seed: probe block}} of the results.json files under folder."""
    found: dict[tuple[str, str], dict[int, dict]] = {}
    for path in sorted(folder.rglob("results.json")):
        r = json.loads(path.read_text())
        found.setdefault((r["modality"], r["method"]), {})[r["seed"]] = r["probe"]
    return found


def shown(values: list[float]) -> str:
    t = t_interval(values)
    return f"{t['mean']:+.1f} ± {(t['ci95'][1] - t['ci95'][0]) / 2:.1f}" if t["ci95"] else f"{t['mean']:+.1f}"


def plain(values: list[float]) -> str:
    return shown(values).lstrip("+")


def penalties(probes: list[dict]) -> str:
    return ", ".join(f"{p['chosen']['weight_decay']:g}" for p in probes)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("new", nargs="+", help="folders of the runs probed with the new sweep (their own results.json)")
    parser.add_argument("--old", required=True, help="folder of the same checkpoints probed again with the old sweep")
    opts = parser.parse_args()
    new: dict[tuple[str, str], dict[int, dict]] = {}
    for folder in opts.new:
        for key, seeds in runs(Path(folder)).items():
            new.setdefault(key, {}).update(seeds)
    old = runs(Path(opts.old))
    print("| modality | method | seeds | linear %, new sweep | linear %, old sweep | gain, new | gain, old "
          "| new - old (paired) | penalties chosen, new | old |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---|")
    for key in sorted(new):
        seeds = sorted(set(new[key]) & set(old.get(key, {})))
        if not seeds:
            continue
        a, b = [new[key][s] for s in seeds], [old[key][s] for s in seeds]
        acc = lambda probes: [100 * p["linear_acc"] for p in probes]  # noqa: E731
        gain = lambda probes: [100 * (p["linear_acc"] - p["random_init_linear_acc"]) for p in probes]  # noqa: E731
        paired = [x - y for x, y in zip(acc(a), acc(b))]
        print(f"| {key[0]} | {key[1]} | {','.join(map(str, seeds))} | {plain(acc(a))} | {plain(acc(b))} | {shown(gain(a))} "
              f"| {shown(gain(b))} | {shown(paired)} | {penalties(a)} | {penalties(b)} |")


if __name__ == "__main__":
    main()
