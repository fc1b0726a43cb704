"""In-context learning: a GPT is shown an optional task description and k solved demonstrations, then
the query, and answers with no gradient step (Brown et al. 2020).

    Reverse the letters.                  <- description (optional)
    otter => retto                        <- k demonstrations, never the query (but in a context
    beetle => elteeb                         family, where the query's key is among them)
    giraffe =>                            <- the query; the model continues " effarig\n"

Built-in tasks are the families of data/icl_tasks.py, asked about words (and operand pairs) that
training never shows. A query and its demonstrations depend only on (seed, task, query, k): adding a
shot count or queries changes no other prompt. Demonstrations can carry gold, random (Min et al.
2022) or flipped (Wei et al. 2023) outputs, the inputs and their order unchanged.

Scoring, as lm-evaluation-harness does: exact match of the greedy continuation (up to the end of the
line); and for tasks with choices, the log-likelihood of each choice as the continuation: `acc` picks
the most likely choice, `acc_norm` the most likely per character of the choice. Accuracies come with
n and a 95% Wilson interval. For every task, a contamination report: the share of its queries whose
whole line, and whose answer, occurs in the training text (GPT-3's appendix C, with exact substrings).
"""

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Annotated

import torch

from ssl_zoo import settings
from ssl_zoo.data.icl_tasks import (FAMILIES, Example, Family, Task, check_task_name, example_line, is_user_task,
                                    made_up_words, read_jsonl_task)
from ssl_zoo.errors import UserError
from ssl_zoo.infer.decode import generate
from ssl_zoo.settings import Names, OneOf, Range
from ssl_zoo.stats import wilson_interval

LABELS = ("gold", "random", "flipped")
MAX_QUERIES = 100_000  # per task: an evaluation that ends in hours on a CPU, not years
SEPARATOR = " =>"
BLOCK = 1 << 24  # characters of training text searched at a time
SHORT_ANSWER = 4  # answers shorter than this (digits, a few letters) recur in any text: not checked for contamination


@dataclass
class ICLConfig:
    tasks: Annotated[list[str] | None, Names(nullable=True, single=True)] = None  # family names or .jsonl paths; None: every family
    shots: list[int] = field(default_factory=lambda: [0, 1, 4, 16])
    # queries per task (a JSONL task uses at most this many); each is a forward pass per shot count
    num_queries: Annotated[int, Range(1, MAX_QUERIES, whole=True)] = 50
    describe: bool = True  # start each prompt with the task description
    labels: Annotated[str, OneOf(LABELS)] = "gold"  # the demonstrations' outputs: gold | random | flipped
    # further label settings to score (random, flipped) ...
    controls: Annotated[list[str], Names(at_least=0, single=True)] = field(default_factory=list)
    control_tasks: Annotated[list[str] | None, Names(at_least=0, nullable=True, single=True)] = None  # ... on these tasks (None: the context families)
    digits: Annotated[int, Range(1, 3, whole=True)] = 2  # number families: digits per operand (4: 81M operand pairs to split)
    seed: Annotated[int, Range(0, 2**32 - 1, whole=True)] = 1234  # draws the queries and their demonstrations (not the training data's seed)
    too_long: Annotated[str, OneOf(("skip", "error"))] = "skip"  # a shot count whose prompts exceed the context: skip (and say so) | error

    def __post_init__(self):
        self.tasks = list(FAMILIES) if self.tasks is None else [self.tasks] if isinstance(self.tasks, str) else list(self.tasks)
        self.shots = [self.shots] if isinstance(self.shots, int) else list(self.shots)
        self.controls = [self.controls] if isinstance(self.controls, str) else list(self.controls)
        if self.control_tasks is None:
            self.control_tasks = [name for name, f in FAMILIES.items() if f.kind == "context"]
        elif isinstance(self.control_tasks, str):
            self.control_tasks = [self.control_tasks]

    def check(self) -> None:
        bad = [k for k in self.shots if not isinstance(k, int) or isinstance(k, bool) or k < 0]
        if bad or not self.shots:
            raise UserError(f"shots must be a list of whole numbers >= 0, got {bad or self.shots}")
        settings.check("", vars(self), ICLConfig)  # num_queries, digits: as ICLConfig declares them
        for labels in [self.labels, *self.controls]:
            if labels not in LABELS:
                raise UserError(f"unknown icl.labels '{labels}'; choose one of: {', '.join(LABELS)}")
        if self.too_long not in ("error", "skip"):
            raise UserError(f"icl.too_long must be error or skip, got '{self.too_long}'")
        for name in [*self.tasks, *self.control_tasks]:
            check_task_name(name)


def build_prompt(description: str, demonstrations: list[Example], query: Example) -> str:
    lines = [description] if description else []
    lines += [example_line(d) for d in demonstrations]
    return "\n".join(lines + [f"{query.input}{SEPARATOR}"])


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

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.logits(self.model(ids))  # (B, T) -> (B, T, V)

    def loglik(self, context: list[int], continuations: list[list[int]]) -> list[float]:
        """log p(continuation | context) for each continuation, in one padded batch."""
        return [lp for lp, _ in self.continuation_scores([(context, c) for c in continuations])]

    @torch.no_grad()
    def continuation_scores(self, pairs: list[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        """For each (context, continuation) of token ids: log p(continuation | context), and whether
        the continuation is the greedy one (every token the most likely), in one padded batch. A pair
        longer than the context window keeps its last block_size + 1 tokens (the continuation whole)."""
        seqs = [(c + t)[-(self.block_size + 1):] for c, t in pairs]
        width = max(map(len, seqs))
        ids = torch.zeros(len(seqs), width, dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
        ids = ids.to(self.device)
        # causal: right padding never changes the scores of the real tokens before it
        logprobs = self.logits(ids[:, :-1]).float().log_softmax(-1)  # (N, W-1, V)
        token_lp = logprobs.gather(-1, ids[:, 1:, None])[..., 0]  # (N, W-1): log p(ids[t+1] | ids[:t+1])
        best = logprobs.argmax(-1) == ids[:, 1:]  # (N, W-1)
        out = []
        for i, (s, (_, t)) in enumerate(zip(seqs, pairs)):
            scored = slice(len(s) - 1 - len(t), len(s) - 1)  # the continuation's tokens, as predicted
            out.append((token_lp[i, scored].sum().item(), bool(best[i, scored].all())))
        return out

    @torch.no_grad()
    def greedy(self, contexts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        """The greedy continuation of each context, decoded together (a ragged batch in the static cache)."""
        steps = list(generate(self.model, contexts, max_new_tokens, temperature=0))
        return torch.cat(steps, dim=1).tolist()


GREEDY_BATCH = 16  # queries whose greedy answers are decoded together


def score_queries(model, prompts: list[tuple[str, Example]]) -> list[dict]:
    """score_query of each (prompt, query); the greedy answers GREEDY_BATCH at a time, each of as many
    tokens as its answer and newline + 2 (the longest of a batch decoded, each cut to its own)."""
    contexts = [model.encode(p) for p, _ in prompts]
    budgets = [len(model.encode(" " + q.output + "\n")) + 2 for _, q in prompts]
    answers = []
    for i in range(0, len(prompts), GREEDY_BATCH):
        batch = slice(i, i + GREEDY_BATCH)
        answers += [a[:n] for a, n in zip(model.greedy(contexts[batch], max(budgets[batch])), budgets[batch])]
    return [scored(model, c, model.decode(a), q) for c, a, (_, q) in zip(contexts, answers, prompts)]


def score_query(model, prompt: str, query: Example) -> dict:
    """{exact: the greedy line is the answer; for a choice query, acc and acc_norm: the likeliest choice
    (in total, per character) is the answer}."""
    return score_queries(model, [(prompt, query)])[0]


def scored(model, context: list[int], greedy: str, query: Example) -> dict:
    result = {"exact": greedy.split("\n")[0].strip() == query.output.strip()}
    if query.choices:
        scores = model.loglik(context, [model.encode(" " + c) for c in query.choices])  # the choice follows " =>"
        truth = query.choices.index(query.output)
        result["acc"] = max(range(len(scores)), key=lambda i: scores[i]) == truth
        # per character of the choice itself, as lm-evaluation-harness normalises (not of the space before it)
        result["acc_norm"] = max(range(len(scores)), key=lambda i: scores[i] / len(query.choices[i])) == truth
    return result


# --- the prompts of a task ----------------------------------------------------------------------
@dataclass
class Prompted:
    """A task as it is asked: episode(i, k) -> (k demonstrations, query i); `queries` are the queries as
    the contamination report checks them (a context family's, as asked with one demonstration: its
    answers are drawn for each episode)."""

    name: str
    description: str
    queries: list[Example]
    episode: Callable[[int, int], tuple[list[Example], Example]]


def relabel(demos: list[Example], labels: str, rng: random.Random, wrong: Callable[[random.Random], str],
            choices: list[str] | None) -> list[Example]:
    """The demonstrations with gold, random or flipped outputs; inputs and order unchanged. random: an
    output from the task's answer space (its choices where it has them, else the answer of another
    input); flipped: the other label of a two-label task, else the outputs passed on one place among
    the demonstrations (each shows another's), or random where there is only one."""
    if labels == "gold" or not demos:
        return demos
    if labels == "random":
        outputs = [rng.choice(choices) if choices else wrong(rng) for _ in demos]
    elif choices and len(choices) == 2:
        outputs = [choices[1 - choices.index(d.output)] if d.output in choices else d.output for d in demos]
    elif len(demos) > 1:
        outputs = [d.output for d in demos[1:] + demos[:1]]
    else:
        outputs = [wrong(rng)]
    return [Example(d.input, o, d.choices) for d, o in zip(demos, outputs)]


def family_prompts(family: Family, cfg: ICLConfig) -> Prompted:
    """Queries on the evaluation pool (words or operand pairs training never shows)."""
    pool = family.pool("eval", cfg.digits)
    order = random.Random(f"{cfg.seed}|{family.name}|order").sample(pool, len(pool))
    items = [order[i % len(order)] for i in range(cfg.num_queries)]

    def episode(i: int, k: int) -> tuple[list[Example], Example]:
        demos, query = family.episode(random.Random(f"{cfg.seed}|{family.name}|{i}|{k}"), pool, k, items[i], "eval")
        if family.kind != "context":  # the same query at every k (a noisy input is drawn once)
            query = family.pose(items[i], random.Random(f"{cfg.seed}|{family.name}|{i}"))
        rng = random.Random(f"{cfg.seed}|{family.name}|{i}|{k}|labels")
        wrong = (lambda r: made_up_words(r, 1, "eval")[0]) if family.kind == "context" else (lambda r: family.pose(r.choice(pool), r).output)
        return relabel(demos, cfg.labels, rng, wrong, query.choices), query

    return Prompted(family.name, family.description, [episode(i, 1)[1] for i in range(cfg.num_queries)], episode)


def user_prompts(task: Task, cfg: ICLConfig) -> Prompted:
    """Queries: the file's first num_queries lines; demonstrations: other lines of the file."""
    queries = task.examples[: cfg.num_queries]

    def episode(i: int, k: int) -> tuple[list[Example], Example]:
        rng = random.Random(f"{cfg.seed}|{task.name}|{i}|{k}")
        pool = [ex for ex in task.examples if ex.input != queries[i].input]
        if k > len(pool):
            raise UserError(f"the task has {len(pool)} examples besides each query, fewer than shots={k}; lower the shots")
        return relabel(rng.sample(pool, k), cfg.labels, rng, lambda r: r.choice(pool).output, queries[i].choices), queries[i]

    return Prompted(task.name, task.description, queries, episode)


def prompted(name: str, cfg: ICLConfig) -> Prompted:
    check_task_name(name)
    return user_prompts(read_jsonl_task(name), cfg) if is_user_task(name) else family_prompts(FAMILIES[name], cfg)


# --- evaluation ---------------------------------------------------------------------------------
def prompts_of(task: Prompted, k: int, cfg: ICLConfig) -> list[tuple[str, Example]]:
    """(prompt, query) of every query with k demonstrations."""
    description = task.description if cfg.describe else ""
    episodes = [task.episode(i, k) for i in range(len(task.queries))]
    return [(build_prompt(description, demos, query), query) for demos, query in episodes]


def longest(model, prompts: list[tuple[str, Example]]) -> int:
    return max(len(model.encode(p)) + len(model.encode(" " + q.output + "\n")) + 2 for p, q in prompts)


def too_long(model, task: Prompted, k: int, cfg: ICLConfig) -> str:
    """The line that refuses k shots whose prompts exceed the model's context."""
    fits = [s for s in range(min(k, model.block_size // 2 + 1)) if longest(model, prompts_of(task, s, cfg)) <= model.block_size]
    most = f"at most {max(fits)} shots fit" if fits else "not even 0 shots fit"
    return f"task '{task.name}' with {k} shots needs prompts longer than this model's context of {model.block_size} tokens; {most}"


def evaluate_task(model, task: Prompted, cfg: ICLConfig) -> tuple[dict, list[int]]:
    """({k: {n, exact_match, exact_match_ci95, acc?, acc_norm?}}, the shot counts skipped as too long)."""
    out, skipped = {}, []
    for k in cfg.shots:
        # a demonstration takes two tokens or more: past half the context, no prompt need be built to know
        prompts = prompts_of(task, k, cfg) if k <= model.block_size // 2 else None
        if prompts is None or longest(model, prompts) > model.block_size:
            if cfg.too_long == "error":
                raise UserError(too_long(model, task, k, cfg) + " (shots=[...], or icl.too_long=skip)")
            skipped.append(k)
            continue
        scores = score_queries(model, prompts)
        row = {"n": len(scores)}
        for metric in ("exact", "acc", "acc_norm"):
            hits = [s[metric] for s in scores if metric in s]
            if hits:
                name = "exact_match" if metric == "exact" else metric
                row[name] = sum(hits) / len(hits)
                row[f"{name}_ci95"] = list(wilson_interval(sum(hits), len(hits)))
        out[str(k)] = row
    return out, skipped


def contamination(tasks: list[Prompted], training_text: Iterable[str]) -> dict:
    """{task: {queries, line, answer, answers_checked}}: the share of a task's queries whose whole line
    (`input => output`) occurs in the training text, and whose answer occurs in it as the answer of a
    line (`=> output` at a line's end), exact substrings both. Answers shorter than SHORT_ANSWER
    characters are not checked (a digit or two letters recur as the answer of any counting or
    cutting task); answers_checked counts those that are. One pass over the text, in blocks."""
    lines = {t.name: [example_line(q) for q in t.queries] for t in tasks}
    answers = {t.name: [f"{SEPARATOR} {q.output}\n" for q in t.queries if len(q.output) >= SHORT_ANSWER] for t in tasks}
    pending = {n for texts in (*lines.values(), *answers.values()) for n in texts}
    found, keep, carry = set(), max(map(len, pending), default=1), ""

    def search(text: str):
        nonlocal carry
        text = carry + text
        found.update(n for n in pending if n in text)
        pending.difference_update(found)
        carry = text[-keep:]

    block, size = [], 0
    for chunk in training_text:
        block.append(chunk)
        size += len(chunk)
        if size >= BLOCK:
            search("".join(block))
            block, size = [], 0
    search("".join(block))
    share = lambda needles: sum(n in found for n in needles) / max(1, len(needles))  # noqa: E731
    return {name: {"queries": len(lines[name]), "line": share(lines[name]), "answer": share(answers[name]),
                   "answers_checked": len(answers[name])} for name in lines}


def evaluate_icl(model, cfg: ICLConfig, splits: dict[str, str] | None = None,
                 training_text: Iterable[str] | None = None) -> tuple[dict, dict]:
    """(scores {task: {k: row}}, meta {task: {split, contamination?, skipped_shots?}}) over cfg.tasks.

    model: a GPTScorer (or anything with its methods); splits: the task's relation to the model's
    training (trained | held_out; a task it names not: unseen, and JSONL tasks: user); training_text:
    the text it was trained on, for the contamination report (None: not checked)."""
    cfg.check()
    tasks = [prompted(name, cfg) for name in cfg.tasks]
    checked = {}
    if training_text is not None:
        try:
            checked = contamination(tasks, training_text)
        except UserError as e:  # e.g. the training file has gone since
            print(f"the training text cannot be read ({e}): no contamination report")
    for name, report in checked.items():
        if report["line"]:
            print(f"warning: {100 * report['line']:.1f}% of the queries of task '{name}' occur in the training text "
                  "(the whole line): their scores measure memory, not learning in context")
    scores, meta = {}, {}
    for name, task in zip(cfg.tasks, tasks):
        scores[task.name], skipped = evaluate_task(model, task, cfg)
        meta[task.name] = {"split": "user" if is_user_task(name) else (splits or {}).get(name, "unseen")}
        if task.name in checked:
            meta[task.name]["contamination"] = checked[task.name]
        if skipped:
            meta[task.name]["skipped_shots"] = skipped
    return scores, meta


def evaluate_gpt(method, cfg: ICLConfig, data=None) -> dict:
    """A trained GPT's in-context scores, in eval mode for the while, as results.json keeps them:
    {"icl": {task: {k: row}} (cfg.labels), "icl_meta": {settings, tasks: {task: {split, contamination,
    skipped_shots}}}, "icl_controls": {labels: {task: {k: row}}} (cfg.controls on cfg.control_tasks)}.
    data: the datamodule the GPT was trained on: its training text is checked for the queries
    (contamination), and icl_mix tells which families it trained on and which it held out."""
    if method.name != "gpt":
        raise UserError(f"in-context evaluation needs a gpt model, not {method.name}; pass a GPT checkpoint "
                        "(or drop the icl settings)")
    splits = data.splits() if hasattr(data, "splits") else {}
    text = data.corpus_chunks() if data is not None else None
    was_training = method.training
    method.eval()
    try:
        return icl_block(GPTScorer(method), cfg, splits, text)
    finally:
        method.train(was_training)


def icl_block(model, cfg: ICLConfig, splits: dict[str, str] | None = None, text: Iterable[str] | None = None) -> dict:
    """The in-context keys of results.json for a scorer (ours, or a model trained elsewhere: its
    training text unknown, no contamination report)."""
    scores, tasks = evaluate_icl(model, cfg, splits, text)
    controls = {labels: evaluate_icl(model, replace(cfg, labels=labels, tasks=cfg.control_tasks), splits)[0]
                for labels in cfg.controls}
    settings = {"labels": cfg.labels, "describe": cfg.describe, "seed": cfg.seed, "num_queries": cfg.num_queries,
                "contamination_checked": all("contamination" in t for t in tasks.values())}
    return {"icl": scores, "icl_meta": {**settings, "tasks": tasks}, **({"icl_controls": controls} if controls else {})}
