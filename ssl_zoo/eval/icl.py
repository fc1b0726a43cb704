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

import torch

from ssl_zoo.data.icl_tasks import SYNTHETIC, Example, Task, load_task
from ssl_zoo.errors import UserError, check_range
from ssl_zoo.nn.transformer import generate


@dataclass
class ICLConfig:
    tasks: list[str] | None = None  # built-in task names or .jsonl paths; None: every built-in task
    shots: list[int] = field(default_factory=lambda: [0, 1, 4, 16])
    num_queries: int = 100  # queries per task (built-in tasks; a JSONL task uses at most this many)
    describe: bool = True  # start each prompt with the task description
    digits: int = 2  # for addition
    seed: int = 1234  # draws the queries and their demonstrations (not the training data's seed)

    def __post_init__(self):
        self.tasks = list(SYNTHETIC) if self.tasks is None else [self.tasks] if isinstance(self.tasks, str) else list(self.tasks)
        self.shots = [self.shots] if isinstance(self.shots, int) else list(self.shots)


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
    check_range("num_queries", cfg.num_queries, 1, whole=True)
    results = {}
    for name in cfg.tasks:
        pool = cfg.num_queries + max(cfg.shots) + 200  # queries first, demonstrations from the whole pool
        task = load_task(name, pool, cfg.seed, cfg.digits)
        results[task.name] = evaluate_task(model, task, cfg)
    return results


def evaluate_gpt(method, cfg: ICLConfig) -> dict:
    """evaluate_icl of a trained GPT, in eval mode for the while."""
    if method.name != "gpt":
        raise UserError(f"in-context evaluation needs a gpt model, not {method.name}; pass a GPT checkpoint "
                        "(or drop the icl settings)")
    was_training = method.training
    method.eval()
    try:
        return evaluate_icl(GPTScorer(method), cfg)
    finally:
        method.train(was_training)
