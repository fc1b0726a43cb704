"""`ssl-zoo <command> [key=value ...]`: one Hydra app per command (train, probe, generate, fill, icl,
embed-plot, serve), plus `compare`.

`python -m ssl_zoo ...` is the same. Config group choices are checked before Hydra starts, so that
a typo gets one line listing the valid names.
"""

import re
import sys
from pathlib import Path

from ssl_zoo import config_dir
from ssl_zoo.errors import UserError, one_line

USAGE = """usage: ssl-zoo <command> [key=value ...] [-m]

commands:
  train     pretrain a method, then probe it:  ssl-zoo train method=simclr data=shapes
  probe     re-probe a saved run:              ssl-zoo probe checkpoint=outputs/.../checkpoints/last.ckpt
  generate  continue a prompt with a GPT:      ssl-zoo generate checkpoint=... prompt="def main(" max_new_tokens=200
  fill      a BERT's candidates for [MASK]:   ssl-zoo fill checkpoint=... text="import [MASK]" top_k=5
  icl       in-context learning accuracy:     ssl-zoo icl checkpoint=... task=reverse shots=[0,1,4,16]
  embed-plot  t-SNE map of a run's features:   ssl-zoo embed-plot checkpoint=...  (beside the random-init encoder's)
  serve     a web page to try GPT and BERT:     ssl-zoo serve checkpoint=<gpt ckpt> checkpoint2=<bert ckpt> port=8000
  compare   leaderboard of results.json files: ssl-zoo compare outputs/ [--out DIR] [--plot]

Every key of the config can be set on the command line (see conf/); -m sweeps comma-separated values.
"""
GROUPS = ("method", "data", "model", "trainer", "probe", "experiment")


def fail(error: BaseException) -> None:
    print(f"ssl-zoo: error: {one_line(error)}", file=sys.stderr)
    sys.exit(2)


def check_group_choices(overrides: list[str]) -> None:
    """Refuse `method=nope` (and the like) with the list of valid names."""
    for override in overrides:
        key, sep, value = override.partition("=")
        key = key.lstrip("+~")
        if not sep or key not in GROUPS or any(c in value for c in "()[]${}"):
            continue
        available = sorted(p.stem for p in (config_dir() / key).glob("*.yaml"))
        for choice in value.split(","):
            if choice not in available and choice != "null":
                raise UserError(f"unknown {key} '{choice}'; choose one of: {', '.join(available)}")


FREE_TEXT_KEYS = ("prompt", "text")  # values that are prose, not Hydra syntax


def quote_free_text(override: str) -> str:
    """`text=The capital of France is [MASK].` as the user means it: Hydra would read [ ] , = ${ } as
    syntax, so the value is passed as one quoted string (unless the user quoted it for Hydra already)."""
    key, sep, value = override.partition("=")
    if not sep or key not in FREE_TEXT_KEYS or (len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""):
        return override
    value = value.replace("${", "\\${")  # literal, not an interpolation
    value = re.sub(r"(\\*)('|$)", lambda m: m.group(1) * 2 + ("\\'" if m.group(2) else ""), value)
    return f"{key}='{value}'"


def run_hydra_app(config_name: str, task, overrides: list[str]) -> None:
    import hydra

    def guarded(cfg):
        try:
            return task(cfg)
        except UserError as e:
            fail(e)

    sys.argv = [sys.argv[0], *overrides]  # Hydra parses sys.argv
    hydra.main(config_path=str(config_dir()), config_name=config_name, version_base="1.3")(guarded)()


def train_task(original_argv: list[str]):
    def task(cfg):
        from hydra.core.hydra_config import HydraConfig

        from ssl_zoo.train import train

        # Lightning's DDP launcher starts the other ranks by re-running this command line.
        sys.argv = original_argv
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        results = train(cfg, run_dir)
        if results is not None:
            print_summary(results, run_dir)
        return results

    return task


def probe_task(cfg):
    from ssl_zoo.train import probe

    results = probe(cfg)
    print_summary(results, Path(results["path"]).parent)
    return results


def generate_task(cfg):
    from ssl_zoo.eval.generate import SamplingSettings, generate_text, load_text_model
    from ssl_zoo.train import require_values

    require_values(cfg)
    settings = SamplingSettings(cfg.max_new_tokens, cfg.temperature, cfg.top_k, cfg.top_p, cfg.seed)
    settings.check()
    method = load_text_model(cfg.checkpoint, "gpt", cfg.device)
    print(cfg.prompt, end="", flush=True)
    for piece in generate_text(method, str(cfg.prompt), settings):
        print(piece, end="", flush=True)
    print()


def fill_task(cfg):
    from ssl_zoo.eval.generate import fill_masks, load_text_model
    from ssl_zoo.train import require_values

    require_values(cfg)
    method = load_text_model(cfg.checkpoint, "bert", cfg.device)
    candidates = fill_masks(method, str(cfg.text), cfg.top_k)
    filled = str(cfg.text)
    for n, options in enumerate(candidates, 1):
        print(f"[MASK] {n}:")
        for token, prob in options:
            print(f"  {prob:6.3f}  {token!r}")
        filled = filled.replace("[MASK]", options[0][0], 1)
    print(f"top-1: {filled}")


def icl_task(cfg):
    from ssl_zoo.eval.generate import load_text_model
    from ssl_zoo.eval.icl import GPTScorer, ICLConfig, evaluate_icl, icl_table
    from ssl_zoo.results import add_to_results
    from ssl_zoo.train import require_values

    require_values(cfg)
    tasks = [cfg.task] if isinstance(cfg.task, str) else list(cfg.task)
    shots = [cfg.shots] if isinstance(cfg.shots, int) else list(cfg.shots)
    icl_cfg = ICLConfig(tasks, shots, cfg.num_queries, cfg.describe, cfg.digits, cfg.seed)
    method = load_text_model(cfg.checkpoint, "gpt", cfg.device)
    results = evaluate_icl(GPTScorer(method), icl_cfg)
    print(icl_table(results))
    path = add_to_results(cfg.checkpoint, "icl", results)
    print(f"written to {path}")


def serve_task(cfg):
    from omegaconf import OmegaConf

    from ssl_zoo.serve import Limits, serve
    from ssl_zoo.train import require_values

    require_values(cfg)
    checkpoints = []
    for key in sorted((k for k in cfg if re.fullmatch(r"checkpoint\d*", str(k))), key=lambda k: int(k[10:] or 1)):
        value = OmegaConf.to_object(cfg[key]) if OmegaConf.is_config(cfg[key]) else cfg[key]
        checkpoints += [str(v) for v in (value if isinstance(value, list) else [value]) if v is not None]
    serve(checkpoints, cfg.host, cfg.port, cfg.device, Limits(**cfg.limits))


def print_summary(results: dict, run_dir: Path) -> None:
    t, p = results["train"], results["probe"] or {}
    pct = lambda x: "-" if x is None else f"{100 * x:.1f}%"  # noqa: E731
    print(f"\n{results['method']} on {results['data']} ({results['model']}, {results['params'] / 1e6:.2f}M params)")
    if t.get("steps") is not None:
        print(f"  trained {t['steps']} steps in {t['seconds']:.0f}s, final loss {t['final_loss']:.4f}")
    extra = results.get("extra") or {}
    if "val_perplexity" in extra:
        print(f"  validation loss {extra['val_loss']:.3f} nats/token (perplexity {extra['val_perplexity']:.1f}); "
              f"unigram baseline {extra['unigram_entropy']:.3f}")
    if "val_masked_acc" in extra:
        print(f"  held-out masked tokens: top-1 {pct(extra['val_masked_acc'])} (unigram baseline {pct(extra['unigram_top1_acc'])})")
    if "sample" in extra:
        print("  greedy sample:\n    " + extra["sample"].strip("\n").replace("\n", "\n    "))
    if p:
        print(
            f"  probe '{p['task']}' ({p['num_classes']} classes): linear {pct(p['linear_acc'])}, "
            f"kNN {pct(p['knn_acc'])}, random-init linear {pct(p['random_init_linear_acc'])}"
        )
    for name, scores in (p.get("baselines") or {}).items():
        print(f"  baseline '{name}' features: linear {pct(scores['linear_acc'])}, kNN {pct(scores['knn_acc'])}")
    if "layer_weights" in p.get("chosen", {}):
        print("  learned layer weights (embeddings first): " + " ".join(f"{w:.2f}" for w in p["chosen"]["layer_weights"]))
    if "finetune_acc" in p:
        print(f"  fine-tuned: {pct(p['finetune_acc'])}, from random init {pct(p.get('random_init_finetune_acc'))}")
    print(f"  run dir: {run_dir}")


def embed_plot_task(cfg):
    from ssl_zoo.train import embed_plot

    print(f"written: {embed_plot(cfg)}")


def compare(args: list[str]) -> None:
    import argparse

    from ssl_zoo.results import compare_runs

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


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    command, rest = argv[0], argv[1:]
    try:
        if command == "train":
            check_group_choices(rest)
            run_hydra_app("train", train_task([sys.argv[0], *argv]), rest)
        elif command == "probe":
            check_group_choices(rest)
            run_hydra_app("probe", probe_task, rest)
        elif command in ("generate", "fill", "icl"):
            rest = [quote_free_text(arg) for arg in rest]
            run_hydra_app(command, {"generate": generate_task, "fill": fill_task, "icl": icl_task}[command], rest)
        elif command == "embed-plot":
            check_group_choices(rest)
            run_hydra_app("embed_plot", embed_plot_task, rest)
        elif command == "serve":
            run_hydra_app("serve", serve_task, rest)
        elif command == "compare":
            compare(rest)
        else:
            raise UserError(f"unknown command '{command}'; choose one of: train, probe, generate, fill, icl, "
                            "embed-plot, serve, compare (ssl-zoo --help)")
    except UserError as e:
        fail(e)
