"""The comparison: leaderboard rows and CSV from results.json contents, and the plots they allow."""

import csv
import io
import json

import pytest
from scipy import stats

from ssl_zoo.errors import UserError
from ssl_zoo.plots import comparison_plots
from ssl_zoo.report import compare_runs, leaderboard, leaderboard_csv
from ssl_zoo.results import experiments, find_results


def result(method, modality, data, task, linear, random_init, params=1000, icl=None, baselines=None, seed=0):
    probe = {"task": task, "num_classes": 10, "linear_acc": linear, "knn_acc": linear / 2, "random_init_linear_acc": random_init,
             "protocol": {"name": "default", "solver": "lbfgs"}}
    if baselines:
        probe["baselines"] = {name: {"linear_acc": acc, "knn_acc": acc} for name, acc in baselines.items()}
    out = {"method": method, "modality": modality, "data": data, "model": f"m{params}", "params": params, "seed": seed,
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
    assert "| +15.0 | one seed | logmel 85.0 |" in table and "### speech · spoken_words · probe task: voice" in table
    lines = list(csv.DictReader(io.StringIO(leaderboard_csv(rows))))
    speech = [line for line in lines if line["modality"] == "speech"]
    assert [line["method"] for line in speech] == ["masked_speech", "apc"]
    assert float(speech[0]["gain"]) == 0.95 - 0.8 and speech[0]["logmel_linear_acc"] == "0.85"
    assert [line["logmel_linear_acc"] for line in lines if line["modality"] == "text"] == ["", ""]

    written = {p.name for p in comparison_plots(rows, tmp_path)}
    assert written == {"loss_curves.png", "probe_accuracy.png", "icl_shots.png", "icl_scaling.png"}  # two sizes: scaling too
    for name in written:
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_runs_that_differ_only_in_seed_are_pooled_with_a_t_interval_and_the_gain_taken_per_seed(tmp_path):
    linear, random_init = [0.50, 0.56, 0.53], [0.40, 0.49, 0.41]
    for seed, (lin, rnd) in enumerate(zip(linear, random_init)):
        write(tmp_path, f"simclr-{seed}", result("simclr", "image", "shapes", "shape", lin, rnd, seed=seed))
        (tmp_path / f"simclr-{seed}" / "config.yaml").write_text(f"method:\n  name: simclr\n  seed: {seed}\nseed: {seed}\nlr: 0.1\n")
    write(tmp_path, "simclr-other-lr", result("simclr", "image", "shapes", "shape", 0.9, 0.4))
    (tmp_path / "simclr-other-lr" / "config.yaml").write_text("method:\n  name: simclr\n  seed: 0\nseed: 0\nlr: 0.3\n")
    rows, _ = find_results([str(tmp_path)])
    pooled, other = sorted(experiments(rows), key=lambda f: len(f["seeds"]), reverse=True)
    assert pooled["seeds"] == [0, 1, 2] and other["seeds"] == [0]  # another lr is another experiment
    gains = [lin - rnd for lin, rnd in zip(linear, random_init)]
    for name, values in (("linear_acc", linear), ("gain", gains)):
        stat = pooled["figures"][name]
        half = stats.t.ppf(0.975, 2) * stats.tstd(values) / 3 ** 0.5
        assert stat["mean"] == pytest.approx(sum(values) / 3) and stat["sd"] == pytest.approx(stats.tstd(values))
        assert stat["ci95"] == pytest.approx([stat["mean"] - half, stat["mean"] + half])
    assert other["figures"]["gain"]["ci95"] is None  # one seed: no interval, not an empty one
    table = leaderboard(rows)
    assert f"| 53.0 ± {100 * stats.t.ppf(0.975, 2) * stats.tstd(linear) / 3 ** 0.5:.1f} |" in table
    assert "| 3 |" in table and "| yes |" in table and "| one seed |" in table  # the gain's interval excludes 0
    line = next(r for r in csv.DictReader(io.StringIO(leaderboard_csv(rows))) if r["seeds"] == "0 1 2")
    assert float(line["gain_ci_low"]) > 0 and float(line["linear_acc_sd"]) == pytest.approx(stats.tstd(linear))

    with pytest.raises(UserError, match=r"simclr on shapes \(m1000\) has 1 seed\(s\) \(0\), fewer than the 2 asked for"):
        compare_runs([tmp_path], tmp_path, min_seeds=2)
    write(tmp_path, "simclr-again", result("simclr", "image", "shapes", "shape", 0.1, 0.1, seed=2))
    (tmp_path / "simclr-again" / "config.yaml").write_text("method:\n  name: simclr\n  seed: 2\nseed: 2\nlr: 0.1\n")
    _, _, problems = compare_runs([tmp_path], tmp_path)
    assert any("seed 2 is also run at" in p for p in problems)  # a seed counted once, and said so


def test_results_files_with_wrong_types_are_skipped_with_a_reason_and_the_rest_compared(tmp_path):
    good = result("simclr", "image", "shapes", "shape", 0.5, 0.4)
    write(tmp_path, "good", good)
    broken = {"probe-text": {**good, "probe": "high"}, "null-train": {**good, "train": None},
              "string-acc": {**good, "probe": {**good["probe"], "linear_acc": "50%"}}, "params-float": {**good, "params": 1.5},
              "a-list": [1, 2]}
    for name, payload in broken.items():
        write(tmp_path, name, payload)
    rows, problems = find_results([str(tmp_path)])
    assert [r["method"] for r in rows] == ["simclr"] and len(problems) == len(broken)
    reasons = " | ".join(problems)
    for expected in ("probe is str, not an object or null", "train is NoneType, not dict", "probe.linear_acc is '50%'",
                     "params is float, not a whole number", "not a JSON object"):
        assert expected in reasons
    assert "| simclr |" in leaderboard(rows)


def test_grid_places_each_experiment_by_objective_and_modality_with_its_gain_over_seeds(tmp_path):
    cells = {("mae", "image", "shapes", "masked"): [(0.40, 0.30), (0.44, 0.30), (0.42, 0.31)],
             ("simclr", "image", "shapes", "joint-embedding"): [(0.50, 0.30), (0.52, 0.31), (0.55, 0.30)],
             ("byol", "image", "shapes", "joint-embedding"): [(0.45, 0.30), (0.46, 0.31), (0.44, 0.30)],
             ("gpt", "text", "python_stdlib", None): [(0.45, 0.40), (0.41, 0.40), (0.46, 0.38)],  # an old record: no objective
             ("apc", "speech", "spoken_words", "autoregressive"): [(0.90, 0.8), (0.85, 0.8), (0.93, 0.8)],
             ("masked_speech", "speech", "spoken_words", "masked"): [(0.91, 0.8), (0.80, 0.8), (0.90, 0.8)]}
    for (method, modality, data, objective), seeds in cells.items():
        for seed, (linear, random_init) in enumerate(seeds):
            payload = result(method, modality, data, "t", linear, random_init, seed=seed)
            if objective:
                payload["objective"] = objective
            write(tmp_path, f"{method}-{seed}", payload)
    table, written, _ = compare_runs([tmp_path], tmp_path, grid=True)
    grid = (tmp_path / "grid.md").read_text()
    assert grid in table and {p.name for p in written} >= {"grid.md", "grid.png"}
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[1:] for line in grid.splitlines() if line.startswith("| ") and "---" not in line}
    text, speech, image = rows["joint-embedding"]
    # Each modality's winner, by the paired difference of the two best objectives over the seeds.
    winners = {line[2:].split(":")[0]: line for line in grid.splitlines() if line.startswith("- ")}
    assert set(winners) == {"speech", "image"}  # text has one objective only
    lead = [a - b for a, b in zip((0.50, 0.52, 0.55), (0.40, 0.44, 0.42))]  # simclr (the better joint-embedding) - mae
    half = stats.t.ppf(0.975, 2) * stats.tstd(lead) / 3 ** 0.5
    assert winners["image"].startswith("- image: joint-embedding (simclr, 52.3") and "ahead of masked (mae)" in winners["image"]
    assert f"by +{100 * sum(lead) / 3:.1f} ± {100 * half:.1f} points, paired over seeds 0, 1, 2: a win at 95%" in winners["image"]
    assert "autoregressive (apc" in winners["speech"] and winners["speech"].endswith("not a win at 95%")
    assert "Each modality's best objective by mean probe accuracy" in grid
    assert text == "-" and speech == "-"
    simclr, byol = image.split("<br>")  # the larger mean gain first
    gains = [0.50 - 0.30, 0.52 - 0.31, 0.55 - 0.30]
    half = stats.t.ppf(0.975, 2) * stats.tstd(gains) / 3 ** 0.5
    assert simclr.startswith("simclr") and f"gain +{100 * sum(gains) / 3:.1f} ± {100 * half:.1f} (n=3) ✓" in simclr
    assert "✓" not in rows["autoregressive"][0]  # gpt's gain interval includes 0
    assert byol.startswith("byol")
    assert rows["masked"][2].startswith("mae") and rows["autoregressive"][0].startswith("gpt")  # by its method's objective
    assert rows["autoregressive"][1].startswith("apc") and rows["masked"][0] == "-"


def test_a_grid_winner_is_paired_only_on_the_seeds_both_objectives_ran(tmp_path):
    # masked ranks first on its mean over seeds 0-2 (63.3) but is behind on the two seeds both ran.
    cells = {("mae", "masked"): {0: 0.50, 1: 0.50, 2: 0.90}, ("aim", "autoregressive"): {0: 0.55, 1: 0.551},
             ("data2vec", "joint-embedding"): {5: 0.1}}  # third by mean: only the two best are compared
    for (method, objective), seeds in cells.items():
        for seed, linear in seeds.items():
            write(tmp_path, f"{method}-{seed}", {**result(method, "image", "shapes", "t", linear, 0.3, seed=seed), "objective": objective})
    compare_runs([tmp_path], tmp_path, grid=True)
    (line,) = [line for line in (tmp_path / "grid.md").read_text().splitlines() if line.startswith("- ")]
    assert line.startswith("- image: masked (mae, 63.3") and "ahead of autoregressive (aim)" in line
    assert "by -5.1 ± 0.6 points" in line and line.endswith("paired over seeds 0, 1: behind autoregressive on these seeds at 95%")
    write(tmp_path, "other-data", {**result("mae", "image", "cifar10", "t", 0.9, 0.3), "objective": "masked"})
    compare_runs([tmp_path], tmp_path, grid=True)  # a lone objective on other data is compared with nothing
    lines = [line for line in (tmp_path / "grid.md").read_text().splitlines() if line.startswith("- ")]
    assert len(lines) == 1 and lines[0].startswith("- image (shapes, t): masked (mae, 63.3")


def test_figures_of_the_earlier_adamw_probe_are_not_compared_with_the_converged_probe(tmp_path):
    old, new = (result("simclr", "image", "shapes", "shape", acc, 0.2) for acc in (0.3, 0.4))
    new["probe"]["protocol"] = {"name": "default", "solver": "lbfgs"}
    old["probe"]["protocol"] = {"name": "default"}  # written before the solver was recorded: fitted by AdamW
    older = result("simclr", "image", "shapes", "shape", 0.35, 0.2, seed=1)
    del older["probe"]["protocol"]  # written before any protocol was recorded: AdamW too
    for name, payload in (("old", old), ("new", new), ("older", older)):
        write(tmp_path, name, payload)
    rows, _ = find_results([str(tmp_path)])
    assert sorted((f["protocol"], f["seeds"]) for f in experiments(rows)) == [("default", [0]), ("default/adamw", [0, 1])]
    assert "### image · shapes · probe task: shape · probe protocol: default/adamw" in leaderboard(rows)
