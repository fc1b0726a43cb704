"""`ssl-zoo compare PATH... [--out DIR] [--plot] [--grid] [--min-seeds N]`: the leaderboard of every
results.json below the paths (report.py), runs that differ only in seed pooled into a mean and a 95%
interval, written as comparison.md and comparison.csv, with the plots on request."""

import argparse
import sys
from pathlib import Path

from ssl_zoo.atomic import check_can_write
from ssl_zoo.errors import UserError
from ssl_zoo.report import compare_runs


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own: the usage over two lines, then the error
        raise UserError(f"compare: {message} (ssl-zoo compare --help)")


def main(args: list[str]) -> None:
    parser = OneLineParser(prog="ssl-zoo compare", description="Leaderboard of results.json files, per "
                                     "modality, data and probe task; written as comparison.md and comparison.csv.")
    parser.add_argument("paths", nargs="+", help="folders (searched recursively, Hydra multirun trees included) or results.json files")
    parser.add_argument("--out", help="folder for comparison.md/.csv and the plots (default: the one folder given, else .)")
    parser.add_argument("--plot", action="store_true", help="also write loss_curves.png, probe_accuracy.png, icl_*.png")
    parser.add_argument("--grid", action="store_true",
                        help="also the 3 x 3 grid, objectives by modalities (grid.md, and its heat map grid.png)")
    parser.add_argument("--min-seeds", type=int, default=1, metavar="N",
                        help="refuse unless every experiment was run with at least N seeds (2 or more: every figure gets an interval)")
    opts = parser.parse_args(args)
    if opts.min_seeds < 1:
        parser.error(f"--min-seeds must be 1 or more, got {opts.min_seeds}")
    if missing := [p for p in opts.paths if not Path(p).exists()]:
        parser.error(f"{missing[0]} does not exist; give folders of runs or results.json files")
    if opts.out is not None and not opts.out.strip():
        parser.error("--out '' names no folder; give a folder, or leave --out out (the one folder given, else .)")
    if opts.out is not None:
        check_can_write(opts.out, "--out", folder=True)
    table, written, problems = compare_runs(opts.paths, opts.out, opts.plot, opts.min_seeds, opts.grid)
    for problem in problems:
        print(f"ssl-zoo compare: {problem}", file=sys.stderr)
    print(table)
    for path in written:
        print(f"written: {path}")
