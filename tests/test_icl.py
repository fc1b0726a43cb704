"""In-context learning: the task families, what training never sees, prompts that depend only on
(seed, task, query, k), label controls, and scoring against a hand-made model whose likelihoods are known."""

import random

import pytest

from ssl_zoo.data.icl_tasks import (EVAL_WORDS, FAMILIES, HELD_OUT, TRAIN_WORDS, TRAINED, VAL_WORDS, Example, Task,
                                    example_line, made_up_words, operand_pairs, read_jsonl_task, word_answers)
from ssl_zoo.errors import UserError
from ssl_zoo.eval.icl import ICLConfig, build_prompt, contamination, evaluate_icl, prompted, score_query, wilson_interval
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

    def greedy(self, contexts, max_new_tokens):
        prompts = [self.decode(context) for context in contexts]
        self.prompts += prompts
        queries = [prompt.splitlines()[-1][: -len(" =>")] for prompt in prompts]
        return [self.encode(self.answers.get(query, " ?\n")[:max_new_tokens]) for query in queries]

    def loglik(self, context, continuations):
        return [self.logliks.get(self.decode(c), -1.0) for c in continuations]


def natural_text() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics)).lower()


def test_there_are_30_families_and_more_split_into_trained_and_held_out():
    assert len(FAMILIES) >= 30 and set(TRAINED) | set(HELD_OUT) == set(FAMILIES) and not set(TRAINED) & set(HELD_OUT)
    assert {f.kind for f in FAMILIES.values()} == {"word", "number", "context"}


def test_families_compute_what_they_describe():
    def answer(name, word):
        return FAMILIES[name].pose(word, random.Random(0)).output

    assert answer("reverse", "giraffe") == "effarig" and answer("reverse.upper", "otter") == "RETTO"
    assert answer("upper.first_three", "beetle") == "BEE" and answer("drop_first.reverse", "camel") == "lema"
    assert answer("shift_1", "yak") == "zbl" and answer("shift_2", "zoo") == "bqq"
    assert answer("swap_halves", "turtle") == "tletur" and answer("count_vowels", "banana") == "3"
    assert FAMILIES["addition"].pose((12, 34), None) == Example("12 + 34", "46")
    noisy = FAMILIES["remove_symbols"].pose("lemon", random.Random(3))
    assert noisy.output == "lemon" and "".join(c for c in noisy.input if c.isalpha()) == "lemon"


def test_training_validation_and_evaluation_pools_are_disjoint_and_evaluation_words_unseen():
    assert not set(TRAIN_WORDS) & set(EVAL_WORDS) and not set(VAL_WORDS) & set(EVAL_WORDS) and not set(TRAIN_WORDS) & set(VAL_WORDS)
    text = natural_text()
    assert [w for w in EVAL_WORDS if w in text] == []  # not in icl_mix's natural text either
    assert [(w, t) for w in EVAL_WORDS for t in TRAIN_WORDS if w in t or t in w] == []
    # nor does any word family give an evaluation word the answer of a training word under any family
    trained = {f.pose(w, None).output for f in FAMILIES.values() if f.kind == "word" and f.name != "remove_symbols" for w in TRAIN_WORDS}
    assert [(w, f.name) for f in FAMILIES.values() if f.kind == "word" and f.name != "remove_symbols" for w in EVAL_WORDS
            if len(f.pose(w, None).output) >= 4 and f.pose(w, None).output in trained] == []
    # and the invented words of either side are none of the other side's answers
    assert not set(made_up_words(random.Random(0), 2000, "train")) & word_answers("eval")
    assert not set(made_up_words(random.Random(0), 500, "eval")) & word_answers("train")
    pools = {split: set(operand_pairs(split)) for split in ("train", "val", "eval")}
    assert sum(map(len, pools.values())) == 90 * 90 and not pools["train"] & pools["eval"] and len(pools["eval"]) > 800


@pytest.mark.parametrize("context_share", [None, 0.3])  # icl_mix's default, and experiment=icl_scaling's
def test_the_default_contamination_report_is_zero(context_share):
    from ssl_zoo.data.text import ICLMix

    tasks = [prompted(name, ICLConfig()) for name in FAMILIES]
    report = contamination(tasks, ICLMix(block_size=256, val_fraction=0.05, context_share=context_share).corpus_chunks())
    assert {name: (r["line"], r["answer"]) for name, r in report.items() if r["line"] or r["answer"]} == {}
    assert report["reverse"]["queries"] == 50 and report["reverse"]["answers_checked"] == 50


def test_contamination_finds_queries_in_the_text_across_block_edges(monkeypatch):
    import ssl_zoo.eval.icl as icl

    monkeypatch.setattr(icl, "BLOCK", 8)  # every chunk its own block
    task = prompted("reverse", ICLConfig(num_queries=4))
    line = example_line(task.queries[0])
    text = ["x" * 10, line[:5], line[5:] + "\n", f"other => {task.queries[1].output}", "\n", task.queries[2].output + "\n"]
    report = contamination([task], text)["reverse"]
    # query 0's whole line, cut by a block edge; query 1's answer as a line's answer; query 2's answer alone is no answer
    assert report["line"] == 0.25 and report["answer"] == 0.5


def test_a_held_out_family_never_appears_in_a_generated_corpus(monkeypatch):
    import ssl_zoo.data.text as text

    used = []
    real = text.episode_text
    monkeypatch.setattr(text, "episode_text", lambda family, *a: used.append(family.name) or real(family, *a))
    data = text.ICLMix(held_out=["reverse", "label"], episodes=3000, block_size=64, val_fraction=0.05)
    corpus = "".join(data.corpus_chunks()) + "".join(data.held_out_chunks())
    assert len(used) > 2000 and set(used) == set(FAMILIES) - {"reverse", "label"}
    assert FAMILIES["reverse"].description not in corpus and FAMILIES["label"].description not in corpus
    assert data.splits()["reverse"] == "held_out" and data.splits()["upper"] == "trained"


def test_k_shot_prompts_are_the_same_whatever_else_is_asked():
    def prompts(**settings):
        model = HandMadeModel()
        evaluate_icl(model, ICLConfig(tasks=["reverse", "translate"], describe=False, **settings))
        return model.prompts

    one = prompts(shots=[1], num_queries=10)
    assert one == [p for p in prompts(shots=[0, 1, 16], num_queries=10) if p.count("\n") == 1]
    assert one[:5] + one[10:15] == prompts(shots=[1], num_queries=5)  # the first queries' prompts, also with fewer


def test_demonstrations_never_show_the_query_except_a_context_familys_key():
    cfg = ICLConfig(num_queries=20)
    reverse, translate = prompted("reverse", cfg), prompted("translate", cfg)
    for i in range(20):
        demos, query = reverse.episode(i, 4)
        assert len(demos) == 4 and query.input not in [d.input for d in demos] and len({d.input for d in demos}) == 4
        demos, query = translate.episode(i, 4)
        assert [d.output for d in demos if d.input == query.input] == [query.output] and query.output in query.choices


def test_random_and_flipped_labels_change_only_the_demonstrations_outputs():
    def lines(labels, name):
        task = prompted(name, ICLConfig(labels=labels, num_queries=10))
        return [build_prompt("", *task.episode(i, 4)).splitlines() for i in range(10)]

    for name in ("reverse", "label", "translate"):
        gold, random_, flipped = (lines(labels, name) for labels in ("gold", "random", "flipped"))
        for g, r, f in zip(gold, random_, flipped):
            assert g[-1] == r[-1] == f[-1]  # the query
            assert [x.split(" => ")[0] for x in g] == [x.split(" => ")[0] for x in r] == [x.split(" => ")[0] for x in f]
        changed = lambda a, b: sum(x != y for p, q in zip(a, b) for x, y in zip(p, q))  # noqa: E731
        assert changed(gold, random_) > 0 and changed(gold, flipped) > 0
    task = prompted("label", ICLConfig(labels="flipped", num_queries=10))
    gold = prompted("label", ICLConfig(num_queries=10))
    for i in range(10):  # two labels: flipped is the other one, everywhere
        (demos, query), (gold_demos, _) = task.episode(i, 4), gold.episode(i, 4)
        assert all(d.output != g.output and d.output in query.choices for d, g in zip(demos, gold_demos))


def test_exact_match_scores_the_greedy_line_and_choices_score_by_likelihood():
    query = Example("x", "abcdef", choices=["ab", "abcdef"])
    # " ab" is likelier in total (-3 > -3.5), " abcdef" per character (-0.58 > -1.5): acc and acc_norm differ
    model = HandMadeModel(answers={"x": " abcdef\nmore"}, logliks={" ab": -3.0, " abcdef": -3.5})
    assert score_query(model, "x =>", query) == {"exact": True, "acc": False, "acc_norm": True}
    model.answers["x"] = " abcde\n"
    assert score_query(model, "x =>", query)["exact"] is False


def test_acc_norm_divides_by_the_length_of_the_choice_as_lm_eval_does():
    # lm-evaluation-harness: argmax of loglik / len(choice), the choice without the space before it.
    # Here that picks "abcd" (-5/4 > -1.5/1); dividing by len(" " + choice) would pick "a" (-1.5/2 > -5/5).
    query = Example("x", "abcd", choices=["a", "abcd"])
    model = HandMadeModel(logliks={" a": -1.5, " abcd": -5.0})
    assert score_query(model, "x =>", query)["acc_norm"] is True


def test_evaluate_counts_accuracy_per_shot_with_a_wilson_interval(tmp_path):
    lines = [f'{{"input": "q{i}", "output": "a{i}"}}' for i in range(20)]
    path = tmp_path / "echo.jsonl"
    path.write_text("\n".join(lines) + "\n")
    # the model knows the answers of the first 5 queries only
    model = HandMadeModel(answers={f"q{i}": f" a{i}\n" for i in range(5)})
    scores, meta = evaluate_icl(model, ICLConfig(tasks=[str(path)], shots=[0, 2], num_queries=10))
    row = scores["echo"]["2"]
    assert row["n"] == 10 and row["exact_match"] == 0.5
    assert row["exact_match_ci95"] == pytest.approx(wilson_interval(5, 10))
    two_shot = [p for p in model.prompts if p.count("\n") == 2]
    assert len(two_shot) == 10 and all(p.split("\n")[-1] not in p.split("\n")[:-1] for p in two_shot)
    assert meta["echo"]["split"] == "user"
    assert "| echo | user | 2 | 10 | 50.0 (" in icl_table({"icl": scores, "icl_meta": {"tasks": meta}})


def test_a_user_task_found_in_the_training_text_is_warned_with_the_share(tmp_path, capsys):
    path = tmp_path / "copied.jsonl"
    path.write_text("".join(f'{{"input": "w{i}", "output": "v{i}x"}}\n' for i in range(8)))
    text = "".join(f"w{i} => v{i}x\n" for i in range(6))  # 6 of the first 6 queries occur
    scores, meta = evaluate_icl(HandMadeModel(), ICLConfig(tasks=[str(path)], shots=[1], num_queries=6), training_text=[text])
    assert meta["copied"]["contamination"]["line"] == 1.0
    assert "warning: 100.0% of the queries of task 'copied' occur in the training text" in capsys.readouterr().out


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(20, 20)[1] == 1.0


def test_bad_settings_are_refused_in_one_line():
    with pytest.raises(UserError, match="num_queries=0 is out of range"):
        evaluate_icl(HandMadeModel(), ICLConfig(tasks=["addition"], num_queries=0))
    with pytest.raises(UserError, match="shots must be a list of whole numbers >= 0"):
        evaluate_icl(HandMadeModel(), ICLConfig(tasks=["addition"], shots=[]))
    with pytest.raises(UserError, match="labels=shuffled is not one of: gold, random, flipped"):
        evaluate_icl(HandMadeModel(), ICLConfig(tasks=["addition"], labels="shuffled"))
    with pytest.raises(UserError, match="unknown ICL task 'nope'; choose a family"):
        evaluate_icl(HandMadeModel(), ICLConfig(tasks=["nope"]))


def test_icl_mix_refuses_unknown_families_a_family_in_both_lists_and_evaluation_words():
    from ssl_zoo.data.text import ICLMix

    with pytest.raises(UserError, match="unknown task family nope; the families are: reverse"):
        ICLMix(families=["reverse", "nope"])
    with pytest.raises(UserError, match="family reverse both trained and held out; take them out of data.families or of data.held_out"):
        ICLMix(families=["reverse", "upper"], held_out=["reverse"])
    with pytest.raises(UserError, match="data.words holds evaluation words \\(giraffe\\)"):
        ICLMix(words=["cat", "giraffe"])


def test_too_many_shots_for_the_context_names_the_maximum_or_is_skipped():
    cfg = dict(tasks=["reverse"], num_queries=5, describe=False)
    with pytest.raises(UserError, match=r"with 16 shots needs prompts longer .* context of 60 tokens; at most \d shots fit"):
        evaluate_icl(HandMadeModel(block_size=60), ICLConfig(**cfg, shots=[16], too_long="error"))
    scores, meta = evaluate_icl(HandMadeModel(block_size=60), ICLConfig(**cfg, shots=[1, 16]))
    assert set(scores["reverse"]) == {"1"} and meta["reverse"]["skipped_shots"] == [16]


def test_bad_tasks_get_one_clear_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"input": "a", "output": "b"}\n{"input": "c"}\n')
    with pytest.raises(UserError, match=r"bad.jsonl, line 2 is not a task example \(missing 'output'\)"):
        read_jsonl_task(path)
    path.write_text('{"input": "a", "output": "b"}\nnot json\n')
    with pytest.raises(UserError, match="line 2 is not a task example"):
        read_jsonl_task(path)
    path.write_text('{"input": "a", "output": "b", "choices": ["x", "y"]}\n{"input": "c", "output": "d"}\n')
    with pytest.raises(UserError, match='line 1 .*"choices" must be a list of strings that contains "output"'):
        read_jsonl_task(path)


def test_jsonl_task_with_choices_round_trips(tmp_path):
    path = tmp_path / "capitals.jsonl"
    path.write_text('{"input": "France", "output": "Paris", "choices": ["Paris", "Rome"]}\n'
                    '{"input": "Italy", "output": "Rome", "choices": ["Paris", "Rome"]}\n')
    task = read_jsonl_task(path)
    assert task == Task("capitals", "", [Example("France", "Paris", ["Paris", "Rome"]), Example("Italy", "Rome", ["Paris", "Rome"])])


def test_scaling_report_tables_and_plots_pooled_accuracy_against_size(tmp_path):
    from ssl_zoo.report import write_scaling_report
    from ssl_zoo.results import write_json

    row = lambda a: {"n": 10, "exact_match": a, "exact_match_ci95": [0, 1]}  # noqa: E731
    for i, (model, params, acc) in enumerate([("small", 100_000, 0.0), ("big", 800_000, 0.2)]):
        write_json(tmp_path / f"{i}" / "results.json", {
            "method": "gpt", "modality": "text", "data": "icl_mix", "model": model, "params": params, "seed": 0,
            "train": {"steps": 1, "seconds": 1, "final_loss": 1.0}, "probe": None,
            "icl": {"reverse": {"0": row(acc), "4": row(3 * acc)}, "upper": {"0": row(0.0), "4": row(2 * acc)},
                    "label": {"0": {**row(0.0), "acc": 0.5}, "4": {**row(0.0), "acc": 0.5 + acc}}},
            "icl_meta": {"labels": "gold", "tasks": {"reverse": {"split": "trained"}, "upper": {"split": "trained"},
                                                      "label": {"split": "held_out"}}},
            "icl_controls": {"random": {"label": {"0": {**row(0.0), "acc": 0.5}, "4": {**row(0.0), "acc": 0.5}}}}})
    table, plot = write_scaling_report(tmp_path)
    text = table.read_text()
    assert "| big | 0.80M | trained | 10.0 (" in text and "| +40.0 |" in text  # 2 of 20 at 0 shots, 10 of 20 at 4
    assert "gain, 4 over 0 shots" in text
    assert "| big | 0.80M | held_out | 50.0 (" in text  # choice accuracy where a task has choices
    assert "| big | 0.80M | context, random | 50.0 (" in text and "| big | 0.80M | context, gold |" in text
    assert text.index("| small |") < text.index("| big |")
    assert plot.stat().st_size > 10_000 and plot.read_bytes()[:4] == b"\x89PNG"
