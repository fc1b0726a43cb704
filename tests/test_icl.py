"""In-context learning: prompts, demonstrations, scoring against a hand-made model whose likelihoods are known."""

import random

import pytest

from ssl_zoo.data.icl_tasks import SYNTHETIC, Example, Task, load_task, made_up_lexicon, read_jsonl_task, synthetic_task
from ssl_zoo.errors import UserError
from ssl_zoo.eval.icl import ICLConfig, build_prompt, draw_demonstrations, evaluate_icl, score_query, wilson_interval
from ssl_zoo.report import icl_table


class HandMadeModel:
    """Characters as tokens; greedy answers and choice likelihoods are set by the test."""

    def __init__(self, answers=None, logliks=None, block_size=10_000):
        self.answers, self.logliks, self.block_size = answers or {}, logliks or {}, block_size
        self.prompts = []

    def encode(self, text):
        return [ord(c) for c in text]

    def decode(self, ids):
        return "".join(map(chr, ids))

    def greedy(self, context, max_new_tokens):
        prompt = self.decode(context)
        self.prompts.append(prompt)
        query = prompt.splitlines()[-1][: -len(" =>")]
        return self.encode(self.answers.get(query, " ?\n")[:max_new_tokens])

    def loglik(self, context, continuations):
        return [self.logliks[self.decode(c)] for c in continuations]


def test_prompt_is_description_demonstrations_query_joined_by_newlines():
    demos = [Example("tac", "cat"), Example("god", "dog")]
    prompt = build_prompt("Reverse the letters of the word.", demos, Example("esuoh", "house"))
    assert prompt == "Reverse the letters of the word.\ntac => cat\ngod => dog\nesuoh =>"
    assert build_prompt("", [], Example("esuoh", "house")) == "esuoh =>"  # zero-shot, no description


def test_demonstrations_are_k_distinct_seeded_and_never_the_query():
    task = synthetic_task("reverse_words", 50, seed=0)
    query = task.examples[0]
    for k in (0, 1, 4, 16):
        demos = draw_demonstrations(task.examples, query, k, random.Random(7))
        assert len(demos) == k and query.input not in [d.input for d in demos]
        assert len({d.input for d in demos}) == k
        assert demos == draw_demonstrations(task.examples, query, k, random.Random(7))


def test_exact_match_scores_the_greedy_line_and_choices_score_by_likelihood():
    query = Example("x", "abcdef", choices=["ab", "abcdef"])
    # " ab" is likelier in total (-3 > -3.5), " abcdef" per character (-0.5 > -1): acc and acc_norm differ
    model = HandMadeModel(answers={"x": " abcdef\nmore"}, logliks={" ab": -3.0, " abcdef": -3.5})
    result = score_query(model, "x =>", query)
    assert result == {"exact": True, "acc": False, "acc_norm": True}
    model.answers["x"] = " abcde\n"
    assert score_query(model, "x =>", query)["exact"] is False


def test_evaluate_counts_accuracy_per_shot_with_a_wilson_interval(tmp_path):
    lines = [f'{{"input": "q{i}", "output": "a{i}"}}' for i in range(20)]
    path = tmp_path / "echo.jsonl"
    path.write_text("\n".join(lines) + "\n")
    # the model knows the answers of the first 5 queries only
    model = HandMadeModel(answers={f"q{i}": f" a{i}\n" for i in range(5)})
    results = evaluate_icl(model, ICLConfig(tasks=[str(path)], shots=[0, 2], num_queries=10))
    row = results["echo"]["2"]
    assert row["n"] == 10 and row["exact_match"] == 0.5
    assert row["exact_match_ci95"] == pytest.approx(wilson_interval(5, 10))
    two_shot = [p for p in model.prompts if p.count("\n") == 2]
    assert len(two_shot) == 10 and all(p.split("\n")[-1] not in p.split("\n")[:-1] for p in two_shot)
    assert "| echo | 2 | 10 | 50.0 (" in icl_table(results)


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(20, 20)[1] == 1.0


def test_bad_settings_are_refused_in_one_line():
    with pytest.raises(UserError, match="num_queries=0 is out of range"):
        evaluate_icl(HandMadeModel(), ICLConfig(tasks=["addition"], num_queries=0))
    with pytest.raises(UserError, match="shots must be a list of whole numbers >= 0"):
        evaluate_icl(HandMadeModel(), ICLConfig(tasks=["addition"], shots=[]))


def test_too_many_shots_for_the_context_names_the_maximum():
    model = HandMadeModel(block_size=60)
    with pytest.raises(UserError, match=r"with 16 shots needs prompts longer .* context of 60 tokens; at most \d shots fit"):
        evaluate_icl(model, ICLConfig(tasks=["reverse_words"], shots=[16], num_queries=5, describe=False))


def test_built_in_tasks_are_well_formed():
    for name in SYNTHETIC:
        task = load_task(name, 30, seed=0)
        assert len(task.examples) == 30 and len({e.input for e in task.examples}) == 30
    add = synthetic_task("addition", 5, seed=0, digits=3).examples[0]
    a, b = map(int, add.input.split(" + "))
    assert int(add.output) == a + b and 100 <= a <= 999
    for ex in synthetic_task("remove_symbols", 10, seed=0).examples:
        assert "".join(c for c in ex.input if c.isalpha()) == ex.output
    for ex in synthetic_task("cycle_letters", 10, seed=0).examples:
        assert sorted(ex.input) == sorted(ex.output) and ex.input in ex.output * 2
    lexicon = made_up_lexicon()
    assert len(set(lexicon.values())) == len(lexicon) and lexicon == made_up_lexicon()
    for ex in synthetic_task("translate", 10, seed=0).examples:
        assert ex.output == lexicon[ex.input] and ex.output in ex.choices and len(ex.choices) == 4


def test_bad_tasks_get_one_clear_line(tmp_path):
    with pytest.raises(UserError, match="unknown ICL task 'nope'; choose one of: addition, cycle_letters"):
        load_task("nope", 10, 0)
    path = tmp_path / "bad.jsonl"
    path.write_text('{"input": "a", "output": "b"}\n{"input": "c"}\n')
    with pytest.raises(UserError, match=r"bad.jsonl, line 2 is not a task example \(missing 'output'\)"):
        read_jsonl_task(path)
    path.write_text('{"input": "a", "output": "b"}\nnot json\n')
    with pytest.raises(UserError, match="line 2 is not a task example"):
        read_jsonl_task(path)
    path.write_text('{"input": "a", "output": "b", "choices": ["x", "y"]}\n{"input": "c", "output": "d"}\n')
    with pytest.raises(UserError, match='line 1 .*"choices" must be a list that contains "output"'):
        read_jsonl_task(path)


def test_jsonl_task_with_choices_round_trips(tmp_path):
    path = tmp_path / "capitals.jsonl"
    path.write_text('{"input": "France", "output": "Paris", "choices": ["Paris", "Rome"]}\n'
                    '{"input": "Italy", "output": "Rome", "choices": ["Paris", "Rome"]}\n')
    task = read_jsonl_task(path)
    assert task == Task("capitals", "", [Example("France", "Paris", ["Paris", "Rome"]), Example("Italy", "Rome", ["Paris", "Rome"])])


def test_scaling_report_tables_and_plots_accuracy_against_size(tmp_path):
    from ssl_zoo.report import write_scaling_report
    from ssl_zoo.results import write_json

    for i, (model, params, acc) in enumerate([("small", 100_000, 0.1), ("big", 800_000, 0.5)]):
        row = lambda a: {"n": 10, "exact_match": a, "exact_match_ci95": [0, 1]}  # noqa: E731
        write_json(tmp_path / f"{i}" / "results.json", {
            "method": "gpt", "modality": "text", "data": "icl_mix", "model": model, "params": params, "seed": 0,
            "train": {"steps": 1, "seconds": 1, "final_loss": 1.0}, "probe": None,
            "icl": {"reverse_words": {"0": row(acc / 2), "4": row(acc)},
                    "translate": {"0": {**row(0.0), "acc": acc}, "4": {**row(0.0), "acc": acc + 0.1}}}})
    table, plot = write_scaling_report(tmp_path)
    text = table.read_text()
    assert "| big | 0.80M | reverse_words | 25.0 | 50.0 |" in text
    assert "| big | 0.80M | translate | 50.0 | 60.0 |" in text  # choice accuracy where a task has choices
    assert "| small | 0.10M | mean | 7.5 | 15.0 |" in text
    assert text.index("| small |") < text.index("| big |")
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:4] == b"\x89PNG"
