"""GPT and BERT through the command line: train -> checkpoint -> generate / fill / icl / probe (bad input: test_bad_input.py)."""

import json

import pytest

from conftest import one_error_line, own_copy, run_cli


def test_gpt_trains_reports_validation_loss_and_a_sample(gpt_run):
    run_dir, result = gpt_run
    results = json.loads((run_dir / "results.json").read_text())
    assert results["method"] == "gpt" and results["modality"] == "text" and results["data"] == "text_file"
    extra = results["extra"]
    assert extra["val_perplexity"] == pytest.approx(2.718281828 ** extra["val_loss"], rel=1e-4)
    assert extra["unigram_entropy"] > 0 and isinstance(extra["sample"], str)
    assert isinstance(extra["val_in_context_score"], float)  # Olsson et al.'s: late tokens' loss minus early ones'
    import csv

    val_losses = [float(r["val/loss"]) for r in csv.DictReader(open(run_dir / "metrics.csv")) if r.get("val/loss")]
    assert len(val_losses) >= 2 and extra["val_best_loss"] == pytest.approx(min(val_losses))  # best and final, as nanoGPT
    assert extra["val_loss"] == pytest.approx(val_losses[-1]) and "best" in result.stdout
    assert results["probe"] is None  # a plain text file has no labels
    assert "validation loss" in result.stdout and "greedy sample" in result.stdout
    config = (run_dir / "config.yaml").read_text()
    assert "vocab_size:" in config and "causal" not in config  # the data's settings are recorded, the method's implied


def test_generate_is_repeatable_by_seed_and_streams_the_continuation(gpt_run):
    ckpt = gpt_run[0] / "checkpoints" / "last.ckpt"
    args = ["generate", f"checkpoint={ckpt}", "prompt=the cat", "max_new_tokens=30", "temperature=1.0", "top_k=10"]
    first, again, other = run_cli(*args, "seed=1"), run_cli(*args, "seed=1"), run_cli(*args, "seed=2")
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout == again.stdout and first.stdout.startswith("the cat")
    assert len(first.stdout.rstrip("\n")) >= len("the cat") + 10
    assert other.stdout != first.stdout
    greedy = run_cli("generate", f"checkpoint={ckpt}", "prompt=the", "max_new_tokens=20", "temperature=0")
    assert greedy.returncode == 0 and greedy.stdout.startswith("the")
    in_bf16 = run_cli(*args, "seed=1", "precision=bf16")  # weights in bf16: a continuation of the same kind
    assert in_bf16.returncode == 0 and in_bf16.stdout.startswith("the cat"), in_bf16.stderr[-2000:]
    assert len(in_bf16.stdout.rstrip("\n")) >= len("the cat") + 10


def test_generate_into_a_pipe_closed_early_ends_quietly(gpt_run):
    import os
    import subprocess
    import sys

    from conftest import ROOT

    ckpt = gpt_run[0] / "checkpoints" / "last.ckpt"
    generating = subprocess.Popen([sys.executable, "-m", "ssl_zoo", "generate", f"checkpoint={ckpt}", "prompt=the",
                                   "max_new_tokens=100000", "temperature=1.0"], cwd=ROOT, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert generating.stdout.read(20).startswith(b"the")  # as `| head -c 20` reads, then leaves
    generating.stdout.close()
    _, errors = generating.communicate(timeout=120)
    assert generating.returncode == 1 and errors.decode().strip() == ""  # no traceback


@pytest.mark.slow  # ~30 s of compiling in a fresh process; the compiled path itself: test_transformer.py
def test_generate_with_compile_writes_the_eager_text(gpt_run):
    ckpt = gpt_run[0] / "checkpoints" / "last.ckpt"
    args = ["generate", f"checkpoint={ckpt}", "prompt=the", "max_new_tokens=20", "temperature=0"]
    eager, compiled = run_cli(*args), run_cli(*args, "compile=true")
    assert compiled.returncode == 0 and compiled.stdout == eager.stdout, compiled.stderr[-2000:]
    assert compiled.stderr.count("\n") <= eager.stderr.count("\n") + 2  # no autotuning tables printed


def test_icl_writes_accuracy_per_shot_into_results(gpt_run, tmp_path):
    ckpt = own_copy(gpt_run[0], tmp_path)  # icl writes into the run's results.json: not into the shared run
    result = run_cli("icl", f"checkpoint={ckpt}", "task=[addition,reverse]", "shots=[0,1]", "num_queries=5", "describe=false",
                     "controls=[random]", "control_tasks=[reverse]")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| addition | unseen | 1 | 5 |" in result.stdout and "contamination (queries whose whole line" in result.stdout
    results = json.loads((ckpt.parents[1] / "results.json").read_text())
    icl, meta = results["icl"], results["icl_meta"]
    assert set(icl) == {"addition", "reverse"} and set(icl["addition"]) == {"0", "1"}
    assert icl["addition"]["0"]["n"] == 5 and 0 <= icl["addition"]["0"]["exact_match"] <= 1
    # a GPT trained on a text file: every family is unseen; its text (with sums in it) was checked for the queries
    assert meta["tasks"]["addition"]["split"] == "unseen" and meta["tasks"]["addition"]["contamination"]["queries"] == 5
    assert set(results["icl_controls"]["random"]) == {"reverse"}


def test_icl_warns_when_a_user_tasks_queries_are_in_the_training_text(gpt_run, corpus, tmp_path):
    sums = [line.split(" => ") for line in corpus.read_text().splitlines() if " => " in line][:12]
    task = tmp_path / "copied.jsonl"
    task.write_text("".join(json.dumps({"input": q, "output": a}) + "\n" for q, a in sums))
    result = run_cli("icl", f"checkpoint={own_copy(gpt_run[0], tmp_path)}", f"task={task}", "shots=[1]", "num_queries=6")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "warning: 100.0% of the queries of task 'copied' occur in the training text" in result.stdout


def test_bert_fill_lists_candidates_sorted_by_probability(bert_run):
    run_dir, result = bert_run
    extra = json.loads((run_dir / "results.json").read_text())["extra"]
    assert 0 <= extra["val_masked_acc"] <= 1 and 0 < extra["unigram_top1_acc"] < 1
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    result = run_cli("fill", f"checkpoint={ckpt}", "text=the cat [MASK]at on the [MASK]at", "top_k=3")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0] == "[MASK] 1:" and lines[4] == "[MASK] 2:" and lines[-1].startswith("top-1: the cat ")
    probs = [float(line.split()[0]) for line in lines[1:4]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001


def test_python_stdlib_train_then_probe_with_the_stored_tokenizer(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("train", "method=gpt", "data.max_chars=150000", "data.tokenizer=char", "data.block_size=32",
                     "data.batch_size=8", "data.probe_length=32", "data.probe_train_per_class=20",
                     "data.probe_test_per_class=5", "model=transformer_nano", "trainer=debug", "probe.steps=20",
                     "probe.weight_decays=[0.0]", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    first = json.loads((run_dir / "results.json").read_text())["probe"]
    assert first["task"] == "stdlib_package" and first["num_classes"] == 10 and first["num_test"] == 50
    again = run_cli("probe", f"checkpoint={run_dir / 'checkpoints' / 'last.ckpt'}", "probe.steps=20",
                    "probe.weight_decays=[0.0]", "probe.finetune_steps=3")
    assert again.returncode == 0, again.stderr[-2000:]
    probe = json.loads((run_dir / "results.json").read_text())["probe"]
    assert probe["knn_acc"] == pytest.approx(first["knn_acc"])  # the stored tokenizer reads the text the same way
    assert 0 <= probe["finetune_acc"] <= 1 and 0 <= probe["random_init_finetune_acc"] <= 1
    assert "fine-tuned:" in again.stdout
    # the same data named on the command line with another context: read with the model's, and said
    named = run_cli("probe", f"checkpoint={run_dir / 'checkpoints' / 'last.ckpt'}", "data=python_stdlib", "data.max_chars=150000",
                    "data.block_size=64", "data.probe_length=32", "data.probe_train_per_class=20", "data.probe_test_per_class=5",
                    "probe.steps=20", "probe.weight_decays=[0.0]")
    assert named.returncode == 0, named.stderr[-2000:]
    assert "data.block_size is read as the encoder was trained: 32 (not 64)" in named.stdout
    assert json.loads((run_dir / "results.json").read_text())["probe"]["knn_acc"] == pytest.approx(first["knn_acc"])


@pytest.mark.parametrize("text", ["The capital of France is [MASK].", "it's a, b=c", "x ${y} z", 'say "hi"', "back\\", "a\\nb", ""])
def test_free_text_reaches_the_command_as_typed(text):
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from ssl_zoo.cli import quote_free_text

    value = OverridesParser.create().parse_override(quote_free_text(f"text={text}")).value()
    assert OmegaConf.create({"text": value}).text == text
