"""The comparison: leaderboard rows and CSV from results.json contents, and the plots they allow."""

import csv
import io
import json

from ssl_zoo.plots import comparison_plots
from ssl_zoo.report import leaderboard, leaderboard_csv
from ssl_zoo.results import find_results


def result(method, modality, data, task, linear, random_init, params=1000, icl=None, baselines=None):
    probe = {"task": task, "num_classes": 10, "linear_acc": linear, "knn_acc": linear / 2, "random_init_linear_acc": random_init}
    if baselines:
        probe["baselines"] = {name: {"linear_acc": acc, "knn_acc": acc} for name, acc in baselines.items()}
    out = {"method": method, "modality": modality, "data": data, "model": f"m{params}", "params": params, "seed": 0,
           "train": {"steps": 10, "seconds": 1.0, "final_loss": 1.0}, "probe": probe}
    if icl:
        out["icl"] = icl
    return out


def write(tmp_path, name, payload):
    (tmp_path / name).mkdir()
    (tmp_path / name / "results.json").write_text(json.dumps(payload))
    (tmp_path / name / "metrics.csv").write_text("epoch,step,train/loss\n0,1,2.0\n0,2,1.5\n")


def icl(scale):
    return {"reverse_words": {"0": {"n": 10, "exact_match": 0.1 * scale}, "4": {"n": 10, "exact_match": 0.3 * scale}},
            "translate": {"0": {"n": 10, "exact_match": 0.0, "acc": 0.3}, "4": {"n": 10, "exact_match": 0.0, "acc": 0.5 * scale}}}


def test_leaderboard_groups_by_task_ranks_by_accuracy_and_keeps_every_baseline(tmp_path):
    write(tmp_path, "a", result("apc", "speech", "spoken_words", "voice", 0.9, 0.8, baselines={"logmel": 0.85}))
    write(tmp_path, "b", result("masked_speech", "speech", "spoken_words", "voice", 0.95, 0.8, baselines={"logmel": 0.85}))
    write(tmp_path, "c", result("gpt", "text", "icl_mix", "icl_task", 0.5, 0.4, params=100, icl=icl(1)))
    write(tmp_path, "d", result("gpt", "text", "icl_mix", "icl_task", 0.6, 0.4, params=1000, icl=icl(2)))
    rows, problems = find_results([str(tmp_path)])
    assert len(rows) == 4 and not problems
    table = leaderboard(rows)
    assert table.index("| masked_speech |") < table.index("| apc |")  # best first within its group
    assert "| +15.0 | logmel 85.0 |" in table and "### speech · spoken_words · probe task: voice" in table
    lines = list(csv.DictReader(io.StringIO(leaderboard_csv(rows))))
    speech = [line for line in lines if line["modality"] == "speech"]
    assert [line["method"] for line in speech] == ["masked_speech", "apc"]
    assert float(speech[0]["gain"]) == 0.95 - 0.8 and speech[0]["logmel_linear_acc"] == "0.85"
    assert [line["logmel_linear_acc"] for line in lines if line["modality"] == "text"] == ["", ""]

    written = {p.name for p in comparison_plots(rows, tmp_path)}
    assert written == {"loss_curves.png", "probe_accuracy.png", "icl_shots.png", "icl_scaling.png"}  # two sizes: scaling too
    for name in written:
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
