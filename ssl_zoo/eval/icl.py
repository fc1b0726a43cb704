"""In-context learning: a GPT is shown an optional task description and k solved demonstrations, then
the query, and answers with no gradient step (Brown et al. 2020).

    Reverse the letters of the word.      <- description (optional)
    tac => cat                            <- k demonstrations, drawn with a fixed seed, never the query
    esuoh => house
    egdirb =>                             <- the query; the model continues " bridge\n"

Scoring, as lm-evaluation-harness does: exact match of the greedy continuation (up to the end of the
line); and for tasks with choices, the log-likelihood of each choice as the continuation: `acc` picks
the most likely choice, `acc_norm` the most likely per character. Accuracies come with n and a 95%
Wilson interval.
"""

import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch
from hydra.experimental.callback import Callback as HydraCallback

from ssl_zoo.data.icl_tasks import Example, Task, load_task
from ssl_zoo.errors import UserError
from ssl_zoo.nn.transformer import generate


@dataclass
class ICLConfig:
    tasks: list[str] = field(default_factory=lambda: ["addition", "cycle_letters", "remove_symbols", "reverse_words", "translate"])
    shots: list[int] = field(default_factory=lambda: [0, 1, 4, 16])
    num_queries: int = 100  # queries per task (built-in tasks; a JSONL task uses at most this many)
    describe: bool = True  # start each prompt with the task description
    digits: int = 2  # for addition
    seed: int = 1234  # draws the queries and their demonstrations (not the training data's seed)


SEPARATOR = " =>"


def build_prompt(description: str, demonstrations: list[Example], query: Example) -> str:
    lines = [description] if description else []
    lines += [f"{d.input}{SEPARATOR} {d.output}" for d in demonstrations]
    return "\n".join(lines + [f"{query.input}{SEPARATOR}"])


def draw_demonstrations(examples: list[Example], query: Example, k: int, rng: random.Random) -> list[Example]:
    """k demonstrations from the pool, none with the query's input."""
    pool = [ex for ex in examples if ex.input != query.input]
    if k > len(pool):
        raise UserError(f"the task has {len(pool)} examples besides each query, fewer than shots={k}; lower the shots")
    return rng.sample(pool, k)


class GPTScorer:
    """A trained GPT seen as ICL needs it: text in, log-likelihoods and greedy text out."""

    def __init__(self, method):
        self.model, self.tokenizer = method.backbone, method.tokenizer
        self.block_size = self.model.cfg.block_size
        self.device = next(self.model.parameters()).device

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)

    @torch.no_grad()
    def loglik(self, context: list[int], continuations: list[list[int]]) -> list[float]:
        """log p(continuation | context) for each continuation, in one padded batch."""
        seqs = [context + c for c in continuations]
        width = max(map(len, seqs))
        ids = torch.zeros(len(seqs), width, dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
        ids = ids.to(self.device)
        # causal: right padding never changes the scores of the real tokens before it
        logprobs = self.model.logits(self.model(ids[:, :-1])).float().log_softmax(-1)  # (N, W-1, V)
        token_lp = logprobs.gather(-1, ids[:, 1:, None])[..., 0]  # (N, W-1): log p(ids[t+1] | ids[:t+1])
        start = len(context) - 1
        return [token_lp[i, start : start + len(c)].sum().item() for i, c in enumerate(continuations)]

    @torch.no_grad()
    def greedy(self, context: list[int], max_new_tokens: int) -> list[int]:
        ids = torch.tensor([context], device=self.device)
        return [t.item() for t in generate(self.model, ids, max_new_tokens, temperature=0)]


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (sound also near 0 and 1)."""
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def score_query(model, prompt: str, query: Example) -> dict:
    context = model.encode(prompt)
    answer = " " + query.output
    greedy = model.decode(model.greedy(context, len(model.encode(answer + "\n")) + 2))
    result = {"exact": greedy.split("\n")[0].strip() == query.output.strip()}
    if query.choices:
        options = [" " + c for c in query.choices]
        scores = model.loglik(context, [model.encode(o) for o in options])
        truth = query.choices.index(query.output)
        result["acc"] = max(range(len(scores)), key=lambda i: scores[i]) == truth
        result["acc_norm"] = max(range(len(scores)), key=lambda i: scores[i] / len(options[i])) == truth
    return result


def prompts_for(task: Task, k: int, queries: list[Example], cfg: ICLConfig) -> list[str]:
    rng = random.Random(f"{cfg.seed}-{task.name}-{k}")
    description = task.description if cfg.describe else ""
    return [build_prompt(description, draw_demonstrations(task.examples, q, k, rng), q) for q in queries]


def check_fits(model, task: Task, k: int, prompts: list[str], queries: list[Example], cfg: ICLConfig) -> None:
    """Refuse shot counts whose prompts (plus the answer) do not fit the model's context."""
    def longest(prompts_, queries_):
        return max(len(model.encode(p)) + len(model.encode(" " + q.output + "\n")) + 2 for p, q in zip(prompts_, queries_))

    if longest(prompts, queries) <= model.block_size:
        return
    fits = [s for s in range(k) if longest(prompts_for(task, s, queries, cfg), queries) <= model.block_size]
    most = f"at most {max(fits)} shots fit" if fits else "not even 0 shots fit"
    raise UserError(f"task '{task.name}' with {k} shots needs prompts longer than this model's context of "
                    f"{model.block_size} tokens; {most} (shots=[...])")


def evaluate_task(model, task: Task, cfg: ICLConfig) -> dict:
    """{k: {n, exact_match, exact_match_ci95, acc?, acc_norm?}} for each number of shots k."""
    queries = task.examples[: cfg.num_queries]
    if len(task.examples) <= max(cfg.shots):
        raise UserError(f"task '{task.name}' has {len(task.examples)} examples; shots={max(cfg.shots)} needs more")
    out = {}
    for k in cfg.shots:
        prompts = prompts_for(task, k, queries, cfg)
        check_fits(model, task, k, prompts, queries, cfg)
        scores = [score_query(model, p, q) for p, q in zip(prompts, queries)]
        row = {"n": len(scores)}
        for metric in ("exact", "acc", "acc_norm"):
            hits = [s[metric] for s in scores if metric in s]
            if hits:
                name = "exact_match" if metric == "exact" else metric
                row[name] = sum(hits) / len(hits)
                row[f"{name}_ci95"] = list(wilson_interval(sum(hits), len(hits)))
        out[str(k)] = row
    return out


def evaluate_icl(model, cfg: ICLConfig) -> dict:
    """{task: {k: scores}} over cfg.tasks; model: a GPTScorer (or anything with its methods)."""
    bad = [k for k in cfg.shots if not isinstance(k, int) or k < 0]
    if bad or not cfg.shots:
        raise UserError(f"shots must be a list of whole numbers >= 0, got {bad or cfg.shots}")
    if not isinstance(cfg.num_queries, int) or cfg.num_queries < 1:
        raise UserError(f"num_queries={cfg.num_queries} is out of range; it must be a whole number of at least 1")
    results = {}
    for name in cfg.tasks:
        pool = cfg.num_queries + max(cfg.shots) + 200  # queries first, demonstrations from the whole pool
        task = load_task(name, pool, cfg.seed, cfg.digits)
        results[task.name] = evaluate_task(model, task, cfg)
    return results


def icl_table(results: dict) -> str:
    """Markdown: one row per (task, shots)."""
    pct = lambda x: f"{100 * x:.1f}"  # noqa: E731
    lines = ["| task | shots | n | exact match % (95% CI) | acc % | acc_norm % |", "|---|---:|---:|---|---:|---:|"]
    for task, by_k in results.items():
        for k, row in by_k.items():
            lo, hi = row["exact_match_ci95"]
            acc = pct(row["acc"]) if "acc" in row else "-"
            acc_norm = pct(row["acc_norm"]) if "acc_norm" in row else "-"
            lines.append(f"| {task} | {k} | {row['n']} | {pct(row['exact_match'])} ({pct(lo)}-{pct(hi)}) | {acc} | {acc_norm} |")
    return "\n".join(lines)


# --- accuracy against model size (GPT-3's scaling figure in miniature) ---------------------------
def primary_metric(row: dict) -> float:
    """A task's headline score: choice accuracy where it has choices, else exact match."""
    return row["acc"] if "acc" in row else row["exact_match"]


def scaling_rows(results: list[dict]) -> list[tuple[int, str, str, int, float]]:
    """(params, model, task, shots, accuracy) for every run that has ICL scores, smallest model first."""
    rows = []
    for r in results:
        for task, by_k in (r.get("icl") or {}).items():
            rows += [(r["params"], r["model"], task, int(k), primary_metric(row)) for k, row in by_k.items()]
    return sorted(rows)


def scaling_table(rows) -> str:
    shots = sorted({k for *_, k, _ in rows})
    tasks = sorted({t for _, _, t, _, _ in rows})
    models = sorted({(p, m) for p, m, *_ in rows})
    score = {(m, t, k): a for _, m, t, k, a in rows}
    head = "| model | params | task | " + " | ".join(f"{k}-shot %" for k in shots) + " |"
    lines = [head, "|---|---:|---|" + "---:|" * len(shots)]
    for params, model in models:
        for task in tasks + ["mean"]:
            cells = []
            for k in shots:
                vals = [score.get((model, t, k)) for t in (tasks if task == "mean" else [task])]
                vals = [v for v in vals if v is not None]
                cells.append(f"{100 * sum(vals) / len(vals):.1f}" if vals else "-")
            lines.append(f"| {model} | {params / 1e6:.2f}M | {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def scaling_plot(rows, path: Path) -> None:
    """Mean accuracy over tasks against parameters, one line per number of shots; and per task."""
    import matplotlib.ticker

    from ssl_zoo.plots import panels, save_figure

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
    save_figure(fig, path)


def write_scaling_report(folder: str | Path) -> tuple[Path, Path] | None:
    """icl_scaling.md and icl_scaling.png in folder, from the results.json files under it."""
    from ssl_zoo.results import find_results

    folder = Path(folder)
    results, _ = find_results([str(folder)])
    rows = scaling_rows(results)
    if not rows:
        print(f"no ICL results under {folder}: no scaling report")
        return None
    table, plot = folder / "icl_scaling.md", folder / "icl_scaling.png"
    tmp = table.with_name(".icl_scaling.md.tmp")
    tmp.write_text(scaling_table(rows) + "\n")
    tmp.replace(table)
    scaling_plot(rows, plot)
    print(scaling_table(rows))
    print(f"written: {table}, {plot}")
    return table, plot


class ScalingReport(HydraCallback):
    """Hydra callback: after a multirun, the ICL scaling table and plot in its sweep folder."""

    def on_multirun_end(self, config, **kwargs) -> None:
        write_scaling_report(config.hydra.sweep.dir)
