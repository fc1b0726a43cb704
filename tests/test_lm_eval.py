"""lm-evaluation-harness on our GPTs: `ssl-zoo icl ... export_tasks=DIR` writes our in-context prompts
as lm-eval tasks; lm-eval scoring them through our adapter (--model ssl-zoo) and through its own `hf`
model on the exported GPT-2 folder gives `ssl-zoo icl`'s per-choice log-likelihoods and accuracies."""

import json

import pytest
import torch

from ssl_zoo.checkpoint import load_method
from ssl_zoo.eval.icl import GPTScorer
from conftest import one_error_line, own_copy, run_cli

lm_eval = pytest.importorskip("lm_eval")
pytest.importorskip("transformers")

PAIRS = [("cat", "mat"), ("dog", "bone"), ("bird", "tree"), ("sat", "on"), ("ate", "the"), ("sang", "in"),
         ("river", "by"), ("while", "a"), ("bone", "dog"), ("tree", "bird")]
CHOICES = ["mat", "bone", "tree", "on"]


@pytest.fixture(scope="module")
def exported(gpt_run, tmp_path_factory):
    """(checkpoint, task folder, ssl-zoo icl's scores, the HF export): a choice task asked with 0 and 1 shots."""
    tmp = tmp_path_factory.mktemp("lm_eval")
    ckpt = own_copy(gpt_run[0], tmp)
    task = tmp / "pairs.jsonl"
    task.write_text("".join(json.dumps({"input": a, "output": b if b in CHOICES else CHOICES[i % 4],
                                        "choices": CHOICES}) + "\n" for i, (a, b) in enumerate(PAIRS)))
    tasks = tmp / "tasks"
    result = run_cli("icl", f"checkpoint={ckpt}", f"task={task}", "shots=[0,1]", "num_queries=8", "describe=false",
                     f"export_tasks={tasks}", "device=cpu")
    assert result.returncode == 0, result.stderr[-3000:]
    icl = json.loads((ckpt.parents[1] / "results.json").read_text())["icl"]["pairs"]
    hf = tmp / "hf"
    assert run_cli("export", f"checkpoint={ckpt}", "format=hf", f"out={hf}").returncode == 0
    return ckpt, tasks, icl, hf


def evaluate(model, tasks, names, **kwargs):
    from lm_eval.tasks import TaskManager

    return lm_eval.simple_evaluate(model=model, tasks=names, task_manager=TaskManager(include_path=str(tasks)),
                                   log_samples=True, num_fewshot=0, **kwargs)


def choice_logliks(samples) -> list[float]:
    """lm-eval's log-likelihood of each choice of each document, documents in order."""
    return [resp[0] for s in sorted(samples, key=lambda s: s["doc_id"]) for resp in s["filtered_resps"]]


def test_export_tasks_writes_a_choice_and_a_generation_task_per_shot_count(exported):
    _, tasks, _, _ = exported
    assert sorted(p.name for p in tasks.glob("*.yaml")) == [
        "ssl_zoo_pairs_0shot.yaml", "ssl_zoo_pairs_0shot_gen.yaml", "ssl_zoo_pairs_1shot.yaml", "ssl_zoo_pairs_1shot_gen.yaml"]
    docs = [json.loads(line) for line in (tasks / "ssl_zoo_pairs_1shot.jsonl").read_text().splitlines()]
    assert len(docs) == 8 and all(d["prompt"].endswith(" =>") and d["prompt"].count("\n") == 1 for d in docs)
    assert all(d["choices"][d["gold"]] == d["target"] for d in docs)


def test_lm_eval_through_our_adapter_gives_icls_logliks_and_accuracies(exported):
    from ssl_zoo.commands.lm_eval_adapter import SslZooLM

    ckpt, tasks, icl, _ = exported
    names = ["ssl_zoo_pairs_0shot", "ssl_zoo_pairs_1shot", "ssl_zoo_pairs_0shot_gen", "ssl_zoo_pairs_1shot_gen"]
    out = evaluate(SslZooLM(checkpoint=str(ckpt), device="cpu"), tasks, names)
    scorer = GPTScorer(load_method(ckpt, "cpu")[0].eval())
    for k in (0, 1):
        name = f"ssl_zoo_pairs_{k}shot"
        docs = [json.loads(line) for line in (tasks / f"{name}.jsonl").read_text().splitlines()]
        ours = [lp for d in docs for lp in scorer.loglik(scorer.encode(d["prompt"]), [scorer.encode(" " + c) for c in d["choices"]])]
        theirs = choice_logliks(out["samples"][name])
        assert theirs == pytest.approx(ours, abs=1e-4)
        assert out["results"][name]["acc,none"] == pytest.approx(icl[str(k)]["acc"])
        assert out["results"][name]["acc_norm,none"] == pytest.approx(icl[str(k)]["acc_norm"])
        assert out["results"][f"{name}_gen"]["exact_match,strip"] == pytest.approx(icl[str(k)]["exact_match"])


def test_lm_evals_own_hf_model_on_the_exported_folder_gives_the_same_numbers(exported):
    ckpt, tasks, icl, hf = exported
    names = ["ssl_zoo_pairs_1shot"]
    theirs = evaluate("hf", tasks, names, model_args=f"pretrained={hf},dtype=float32", device="cpu", batch_size=4)
    from ssl_zoo.commands.lm_eval_adapter import SslZooLM

    ours = evaluate(SslZooLM(checkpoint=str(ckpt), device="cpu"), tasks, names)
    name = names[0]
    assert choice_logliks(theirs["samples"][name]) == pytest.approx(choice_logliks(ours["samples"][name]), abs=1e-4)
    assert theirs["results"][name]["acc,none"] == pytest.approx(icl["1"]["acc"])


def test_loglikelihood_rolling_scores_every_token_once_across_windows(gpt_run):
    from lm_eval.api.instance import Instance
    from lm_eval.utils import get_rolling_token_windows

    from ssl_zoo.commands.lm_eval_adapter import SslZooLM

    run_dir, _ = gpt_run
    lm = SslZooLM(checkpoint=str(run_dir / "checkpoints" / "last.ckpt"), device="cpu")
    text = "the cat sat on the mat and the dog ate the bone. " * 8
    ids = lm.tok_encode(text)
    assert len(ids) > 2 * lm.max_length  # three windows of the context of 48 tokens
    (rolling,) = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (text,), 0)])
    # directly: each window's tokens predicted from the window's inputs before them (the first from end-of-text)
    windows = list(get_rolling_token_windows(ids, lm.eot_token_id, lm.max_length, 1))
    assert sum(len(targets) for _, targets in windows) == len(ids)
    model, total = lm.scorer.model, 0.0
    with torch.no_grad():
        for inputs, targets in windows:
            logprobs = model.logits(model(torch.tensor([inputs])))[0].log_softmax(-1)[-len(targets):]  # (len(targets), V)
            total += logprobs.gather(-1, torch.tensor(targets)[:, None]).sum().item()
    assert rolling == pytest.approx(total, abs=1e-3)


def test_ssl_zoo_lm_eval_runs_lm_evals_command_line_with_our_model(exported, tmp_path):
    ckpt, tasks, icl, _ = exported
    result = run_cli("lm-eval", "--model", "ssl-zoo", "--model_args", f"checkpoint={ckpt},device=cpu", "--tasks",
                     "ssl_zoo_pairs_0shot", "--include_path", str(tasks), "--output_path", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr[-3000:]
    written = json.loads(next((tmp_path / "out").rglob("results_*.json")).read_text())
    assert written["results"]["ssl_zoo_pairs_0shot"]["acc,none"] == pytest.approx(icl["0"]["acc"])


def test_lm_eval_on_a_bert_checkpoint_is_one_line(bert_run, exported):
    run_dir, _ = bert_run
    _, tasks, _, _ = exported
    result = run_cli("lm-eval", "--model", "ssl-zoo", "--model_args", f"checkpoint={run_dir}/checkpoints/last.ckpt",
                     "--tasks", "ssl_zoo_pairs_0shot", "--include_path", str(tasks))
    assert "holds a bert model, but `lm-eval` needs a gpt checkpoint" in one_error_line(result)
