"""`ssl-zoo compare PATH... [--out DIR] [--plot]`: the leaderboard of every results.json below the
paths (report.py), written as comparison.md and comparison.csv, with the plots on request."""

import argparse
import sys

from ssl_zoo.report import compare_runs


def main(args: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="ssl-zoo compare", description="Leaderboard of results.json files, per "
                                     "modality, data and probe task; written as comparison.md and comparison.csv.")
    parser.add_argument("paths", nargs="+", help="folders (searched recursively, Hydra multirun trees included) or results.json files")
    parser.add_argument("--out", help="folder for comparison.md/.csv and the plots (default: the one folder given, else .)")
    parser.add_argument("--plot", action="store_true", help="also write loss_curves.png, probe_accuracy.png, icl_*.png")
    opts = parser.parse_args(args)
    table, written, problems = compare_runs(opts.paths, opts.out, opts.plot)
    for problem in problems:
        print(f"ssl-zoo compare: {problem}", file=sys.stderr)
    print(table)
    for path in written:
        print(f"written: {path}")
