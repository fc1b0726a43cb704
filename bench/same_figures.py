"""Same figures before and after: a check for changes that must not change behaviour (a refactor).

Runs each of the six methods for 30 steps at seed 0 on its embedded data, with a small probe, in two
source trees (the code before the change, e.g. a git worktree of an earlier commit, and this
checkout), and compares their results.json figure by figure: training steps and final loss, the
encoder's size, every probe figure, the validation figures and the final logged metrics (timings are
left out), and every tensor of their checkpoints/last.ckpt, bit for bit. Exits 1 if any figure of the
code before differs or is gone, or any tensor differs; figures that only the code after has (new keys)
are listed, not counted against it.

    git worktree add /tmp/before <the commit before the change>
    python bench/same_figures.py --before /tmp/before            # --after defaults to this checkout
    python bench/same_figures.py --before /tmp/before --methods gpt,bert
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

PROBE = ["probe.max_train=400", "probe.steps=60", "probe.weight_decays=[0.0,1e-3]"]
RUNS = {
    "simclr": ["method=simclr", "data.num_train=512", "data.num_test=200", "data.batch_size=64"],
    "byol": ["method=byol", "data.num_train=512", "data.num_test=200", "data.batch_size=64"],
    "gpt": ["method=gpt", "model=transformer_nano", "data.max_chars=400000", "data.batch_size=8", "data.val_windows=32",
            "method.sample_tokens=40"],
    "bert": ["method=bert", "model=transformer_nano", "data.max_chars=400000", "data.batch_size=8", "data.val_windows=32"],
    "masked_speech": ["method=masked_speech", "model=transformer_nano", "data.num_voices=6", "data.takes=4"],
    "apc": ["method=apc", "model=transformer_nano", "data.num_voices=6", "data.takes=4"],
}


def figures(source: Path, out: Path, methods: list[str], cache: Path) -> dict:
    """{method: the figures of its results.json} of short runs with the code of `source`."""
    env = {**os.environ, "PYTHONPATH": str(source), "SSL_ZOO_CACHE": str(cache), "PYTHONWARNINGS": "ignore"}
    found = {}
    for name in methods:
        run_dir = out / name
        done = subprocess.run([sys.executable, "-m", "ssl_zoo", "train", *RUNS[name], *PROBE, "trainer.max_steps=30",
                               "seed=0", f"hydra.run.dir={run_dir}"], cwd=source, env=env, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{name} failed in {source}:\n{done.stderr[-3000:]}")
        r = json.loads((run_dir / "results.json").read_text())
        found[name] = {"train": {k: v for k, v in r["train"].items() if k != "seconds"}, "params": r["params"],
                       "probe": r["probe"], "extra": r["extra"]}
        print(f"{source}: {name} done", file=sys.stderr)
    return found


def tensors_that_differ(out: Path, methods: list[str]) -> list[str]:
    """The state-dict tensors of last.ckpt that are not bitwise equal before and after (or not on both sides)."""
    import torch

    differ = []
    for name in methods:
        before, after = (torch.load(out / side / name / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
                         for side in ("before", "after"))
        keys = sorted(set(before) | set(after))
        bad = [k for k in keys if k not in before or k not in after or not torch.equal(before[k], after[k])]
        print(f"{name}: {len(keys) - len(bad)} of the {len(keys)} tensors of last.ckpt bitwise equal")
        differ += [f"{name}: {k}" for k in bad]
    return differ


def flat(tree, prefix="") -> dict:
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in flat(value, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): tree}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--before", required=True, help="the source tree of the code before the change")
    p.add_argument("--after", default=str(Path(__file__).resolve().parents[1]), help="default: this checkout")
    p.add_argument("--methods", default=",".join(RUNS), help="comma-separated, default: all six")
    p.add_argument("--out", help="where the runs go (default: a temporary folder)")
    args = p.parse_args()
    methods = args.methods.split(",")
    out = Path(args.out or tempfile.mkdtemp(prefix="same_figures_"))
    runs = {side: flat(figures(Path(getattr(args, side)).resolve(), out / side, methods, out / "cache")) for side in ("before", "after")}
    before, after = runs["before"], runs["after"]
    # Both sides share one cache, so that trainer.precision=auto picks the same precision for both: the second
    # side reads the first side's timing (source "cached"), the figures it chose by are the same.
    changed = [k for k in sorted(before) if after.get(k, "(absent)") != before[k] and not k.endswith("precision_choice.source")]
    added = [k for k in sorted(after) if k not in before]
    for key in changed:
        print(f"changed {key}: before {before[key]}, after {after.get(key, '(absent)')}")
    for key in added:
        print(f"new {key}: {after[key]}")
    print(f"{len(before)} figures before: {len(changed)} changed or gone; {len(added)} new (runs in {out})")
    differ = tensors_that_differ(out, methods)
    for key in differ:
        print(f"tensor differs: {key}")
    sys.exit(1 if changed or differ else 0)


if __name__ == "__main__":
    main()
