"""The Python API, for notebooks and scripts: compose a config from the same overrides as the command
line, then train, probe, compare, map, generate and fill with the functions the CLI calls.

    from ssl_zoo import api
    results = api.train("method=simclr", "trainer.max_steps=200", run_dir="outputs/nb/simclr")
    print(api.compare("outputs/nb", plot=True))
"""

from pathlib import Path

from omegaconf import DictConfig

from ssl_zoo import config_dir
from ssl_zoo.run.folder import RunFolder


def compose(*overrides: str, config_name: str = "train") -> DictConfig:
    """The config `ssl-zoo <command> overrides...` would run with (command = config_name)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from ssl_zoo.cli import check_group_choices

    check_group_choices(list(overrides))
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides))


def train(*overrides: str, run_dir: str | Path) -> dict:
    """Pretrain and probe as `ssl-zoo train overrides...`, into run_dir; the results.json contents. A run
    already in run_dir is replaced (a notebook's cell run again), unless resume= is given (resume=auto: continued)."""
    from ssl_zoo.run.train import train as train_run

    resume = [] if any(o.startswith("resume=") for o in overrides) else ["resume=false"]
    return train_run(compose(*overrides, *resume), run_dir)


def checkpoint_of(run_dir: str | Path) -> Path:
    return RunFolder(run_dir).last_checkpoint


def probe(run_dir: str | Path, *overrides: str) -> dict:
    """Re-probe a run (e.g. on other data: "data=fsdd", "data.root=..."), as `ssl-zoo probe`."""
    from ssl_zoo.commands.probe import probe as probe_run

    return probe_run(compose(f"checkpoint={checkpoint_of(run_dir)}", *overrides, config_name="probe"))


def embed_plot(run_dir: str | Path, *overrides: str) -> Path:
    """The t-SNE maps of `ssl-zoo embed-plot`; the PNG's path."""
    from ssl_zoo.commands.embed_plot import embed_plot as embed_plot_run

    return embed_plot_run(compose(f"checkpoint={checkpoint_of(run_dir)}", *overrides, config_name="embed_plot"))


def compare(*paths: str | Path, out: str | Path | None = None, plot: bool = False, min_seeds: int = 1,
            grid: bool = False) -> str:
    """The leaderboard (Markdown) of every results.json under paths, as `ssl-zoo compare` prints it:
    runs that differ only in seed pooled into a mean and a 95% interval (min_seeds: refuse unless every
    experiment has as many); comparison.md/.csv (and with plot, the PNGs; with grid, the objectives x
    modalities table after it, grid.md and grid.png) are written to out (default: the one folder given)."""
    from ssl_zoo.report import compare_runs

    table, _, problems = compare_runs(list(paths), out, plot, min_seeds, grid)
    for problem in problems:
        print(problem)
    return table


def experiments(*paths: str | Path) -> list[dict]:
    """The runs under paths pooled as `compare` pools them: one record per experiment with its seeds and
    every figure as {mean, sd, n, ci95} (e.g. rows[0]["figures"]["gain"]["ci95"])."""
    from ssl_zoo.results import experiments as pooled, find_results

    rows, problems = find_results([str(p) for p in paths])
    for problem in problems:
        print(problem)
    return pooled(rows)


def generate(run_dir: str | Path, prompt: str, max_new_tokens: int = 100, temperature: float = 0.8,
             top_k: int | None = 50, top_p: float | None = None, seed: int = 0, precision: str = "32",
             compile: bool = False) -> str:
    """A GPT run's continuation of prompt, as `ssl-zoo generate` prints it (precision: its weights', compile:
    the decoding steps through torch.compile, as there)."""
    from ssl_zoo.infer.load import load_text_model
    from ssl_zoo.infer.text import SamplingSettings, generate_text

    settings = SamplingSettings(max_new_tokens, temperature, top_k, top_p, seed)
    settings.check()
    method = load_text_model(checkpoint_of(run_dir), "gpt", "cpu", precision=precision)
    return prompt + "".join(generate_text(method, prompt, settings, compile))


def fill(run_dir: str | Path, text: str, top_k: int = 5) -> list[list[tuple[str, float]]]:
    """A BERT run's top_k (token, probability) for each [MASK] in text, as `ssl-zoo fill` lists them."""
    from ssl_zoo.infer.load import load_text_model
    from ssl_zoo.infer.text import fill_masks

    return fill_masks(load_text_model(checkpoint_of(run_dir), "bert", "cpu"), text, top_k)
