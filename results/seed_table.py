"""Print, as markdown, each run's probe figures under a results folder: one row per cell, one column per
seed, `linear % (gain over the random-init encoder)`, then the mean and 95% t-interval of the gain over
the seeds given. The README's per-seed tables are this script's output:

    python results/seed_table.py results/grid_fixes
    python results/seed_table.py results/grid_fixes --seeds 1,2,3
"""

import argparse
import json
from pathlib import Path

from ssl_zoo.stats import t_interval


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folders", nargs="+", help="folders with <cell>/seed<N>/results.json or seed<N>/results.json below them")
    parser.add_argument("--seeds", help="only these seeds in the summary, e.g. 1,2,3 (those a choice did not look at)")
    opts = parser.parse_args()
    only = {int(s) for s in opts.seeds.split(",")} if opts.seeds else None
    cells: dict[str, dict[int, dict]] = {}
    for folder in map(Path, opts.folders):
        for path in sorted(folder.rglob("results.json")):
            r = json.loads(path.read_text())
            cell = f"{r['method']} ({r['data']}, {r['model']})"
            cells.setdefault(cell, {})[r["seed"]] = r
    seeds = sorted({s for runs in cells.values() for s in runs})
    print("| cell | " + " | ".join(f"seed {s}" for s in seeds) + " | gain over " + ("seeds " + opts.seeds if only else "all") + " |")
    print("|---|" + "---:|" * len(seeds) + "---:|")
    for cell, runs in cells.items():
        row, gains = [], []
        for s in seeds:
            if s not in runs:
                row.append("-")
                continue
            p = runs[s]["probe"]
            gain = 100 * (p["linear_acc"] - p["random_init_linear_acc"])
            row.append(f"{100 * p['linear_acc']:.1f} ({gain:+.1f})")
            if only is None or s in only:
                gains.append(gain)
        t = t_interval(gains)
        spread = f" ± {(t['ci95'][1] - t['ci95'][0]) / 2:.1f}" if t["ci95"] else ""
        print(f"| {cell} | " + " | ".join(row) + f" | {t['mean']:+.1f}{spread} (n={t['n']}) |")


if __name__ == "__main__":
    main()
