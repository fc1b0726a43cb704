"""results.json: the record of one run, built in one place (`record`) next to its schema, written
atomically, found again across a tree of runs, and read back (the rows of ICL scaling).

    {"method", "modality", "objective", "data", "model", "params" (the encoder's), "seed",
     "train": {"steps", "seconds", "final_loss"},
     "probe": {"task", "num_classes", "linear_acc", "knn_acc", "random_init_linear_acc", ...} or null,
     "extra": {...},
     GPT runs with in-context scores: "icl": {task: {shots: {n, exact_match, exact_match_ci95, acc?, ...}}},
     "icl_meta": {labels, describe, seed, num_queries, contamination_checked,
                  tasks: {task: {split, contamination: {queries, line, answer, answers_checked}, skipped_shots?}}},
     "icl_controls": {random | flipped: {task: {shots: {...}}}} (where asked for)}
"""

import json
from pathlib import Path

from omegaconf import OmegaConf

from ssl_zoo.atomic import atomic_write
from ssl_zoo.run.folder import RunFolder
from ssl_zoo.stats import t_interval

REQUIRED = ("method", "modality", "data", "model", "params", "seed", "train", "probe")
NO_TRAINING = {"steps": None, "seconds": None, "final_loss": None}  # a record whose training is not known


def encoder_parameters(method) -> int:
    """What `params` counts: the encoder's parameters (heads are left behind after pretraining)."""
    return sum(p.numel() for p in method.backbone.parameters())


def record(cfg, method, train: dict | None, probe: dict | None, extra: dict, icl: dict | None = None) -> dict:
    """The results.json of a run of config cfg (the run's own, or the one a saved run is probed with);
    icl: the in-context keys (icl, icl_meta, icl_controls) of eval.icl.evaluate_gpt."""
    results = {
        "method": cfg.method.name,
        "modality": method.modality,
        "objective": method.objective,
        "data": cfg.data.name,
        "model": cfg.model.name,
        "params": encoder_parameters(method),
        "seed": cfg.seed,
        "train": train or dict(NO_TRAINING),
        "probe": probe,
        "extra": extra,
    }
    return {**results, **(icl or {})}


def write_json(path: Path, payload: dict) -> Path:
    return atomic_write(path, json.dumps(payload, indent=2) + "\n")


def read_json(path: Path) -> dict:
    """A results file's contents, or {} when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def add_icl_to_results(checkpoint: str | Path, icl: dict) -> Path:
    """Merge in-context scores (evaluate_gpt's keys) into the results.json of the checkpoint's run
    (created if there is none): a task's scores replace that task's, the others stay."""
    path = RunFolder.of_checkpoint(checkpoint).results
    results = read_json(path)
    results["icl"] = {**(results.get("icl") or {}), **icl["icl"]}
    old_meta = results.get("icl_meta") or {}
    results["icl_meta"] = {**old_meta, **icl["icl_meta"], "tasks": {**old_meta.get("tasks", {}), **icl["icl_meta"]["tasks"]}}
    for labels, scores in icl.get("icl_controls", {}).items():
        controls = results.setdefault("icl_controls", {})
        controls[labels] = {**controls.get(labels, {}), **scores}
    return write_json(path, results)


NUMBERS = {"train": ("steps", "seconds", "final_loss"),
           "probe": ("linear_acc", "knn_acc", "random_init_linear_acc", "random_init_knn_acc")}


def check_types(row: dict) -> None:
    """Refuse (ValueError) a results record whose parts a comparison reads have the wrong types."""
    for key, kind in (("method", str), ("modality", str), ("data", str), ("model", str), ("train", dict)):
        if not isinstance(row[key], kind):
            raise ValueError(f"{key} is {type(row[key]).__name__}, not {kind.__name__}")
    if not isinstance(row["params"], int) or isinstance(row["params"], bool):
        raise ValueError(f"params is {type(row['params']).__name__}, not a whole number")
    if row["probe"] is not None and not isinstance(row["probe"], dict):
        raise ValueError(f"probe is {type(row['probe']).__name__}, not an object or null")
    for part, keys in NUMBERS.items():
        for key in keys:
            value = (row[part] or {}).get(key)
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
                raise ValueError(f"{part}.{key} is {value!r}, not a number or null")


def find_results(paths: list[str]) -> tuple[list[dict], list[str]]:
    """Every results*.json under the given folders (or files): (valid results, problems found)."""
    rows, problems = [], []
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            files += sorted(p.rglob("results*.json"))
        else:
            problems.append(f"{p}: no such file or folder")
    for f in files:
        try:
            row = json.loads(f.read_text())
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
            missing = [k for k in REQUIRED if k not in row]
            if missing:
                raise ValueError(f"missing {', '.join(missing)}")
            check_types(row)
        except (ValueError, OSError) as e:
            problems.append(f"{f}: skipped, not a complete results file ({e})")
            continue
        row["path"] = str(f)
        rows.append(row)
    return rows, problems


# --- runs that differ only in seed ----------------------------------------------------------------
NOT_THE_EXPERIMENT = {"seed", "resume", "checkpoint_every_n_steps", "cache_dir", "num_workers", "enable_progress_bar",
                      "log_every_n_steps"}  # settings that change a run's seed or its bookkeeping, not what it measures


def protocol_label(probe: dict | None) -> str:
    """The protocol of a probe block (results.json's `probe`): its name, with the linear probe's solver
    where it is not L-BFGS. A probe block that names no solver (or no protocol at all) was written
    before the L-BFGS probe and fitted by AdamW: "default/adamw", never pooled or compared with the
    converged probe's figures. No probe block: "default"."""
    if not probe:
        return "default"
    protocol = probe.get("protocol") or {}
    solver = protocol.get("solver", "adamw")
    return protocol.get("name", "default") + ("" if solver == "lbfgs" else f"/{solver}")


def experiment_of(row: dict) -> str:
    """What a run measures, as a canonical string: its config.yaml (written beside results.json) with
    every seed and bookkeeping setting left out; for a run without one, its method, data, model,
    probe task and steps; and the probe protocol its figures were measured with. Runs with equal
    strings differ only in seed."""
    def strip(node):
        if isinstance(node, dict):
            return {k: strip(v) for k, v in node.items() if k not in NOT_THE_EXPERIMENT}
        return [strip(v) for v in node] if isinstance(node, list) else node

    try:
        config = OmegaConf.to_container(OmegaConf.load(RunFolder(Path(row["path"]).parent).config))
    except Exception:  # no config.yaml (a results.json copied alone, an older run), or not a readable one
        config = None
    if not isinstance(config, dict):
        config = {"method": row["method"], "data": row["data"], "model": row["model"], "params": row["params"],
                  "task": (row["probe"] or {}).get("task"), "steps": (row.get("train") or {}).get("steps")}
    measured = {**strip(config), "probe protocol": protocol_label(row["probe"])}
    return json.dumps(measured, sort_keys=True, default=str)


def seed_groups(rows: list[dict]) -> tuple[list[list[dict]], list[str]]:
    """The runs grouped by experiment_of, one run per seed in each group (a seed run twice: the run
    listed last is kept, and said so), in the order the groups are first met; and the problems."""
    groups: dict[str, dict] = {}
    problems = []
    for row in rows:
        by_seed = groups.setdefault(experiment_of(row), {})
        if row["seed"] in by_seed:
            problems.append(f"{by_seed[row['seed']]['path']}: seed {row['seed']} is also run at {row['path']}; "
                            "the second is counted, once")
        by_seed[row["seed"]] = row
    return [sorted(by_seed.values(), key=lambda r: str(r["seed"])) for by_seed in groups.values()], problems


def run_figures(row: dict) -> dict[str, float | None]:
    """The figures of one run that the leaderboard compares; the gain over random init is taken per
    run (per seed), so that its interval is the interval of the gain itself."""
    p, train = row["probe"] or {}, row.get("train") or {}
    linear, random_init = p.get("linear_acc"), p.get("random_init_linear_acc")
    figures = {"linear_acc": linear, "knn_acc": p.get("knn_acc"), "random_init_linear_acc": random_init,
               "gain": None if linear is None or random_init is None else linear - random_init,
               "final_loss": train.get("final_loss"), "seconds": train.get("seconds")}
    for name, scores in (p.get("baselines") or {}).items():
        figures[f"{name}_linear_acc"] = scores.get("linear_acc")
    diagnostics = p.get("diagnostics") or {}
    for name in ("rankme", "uniformity", "alignment", "class_alignment"):  # collapse: effective rank, spread, agreement
        figures[name] = diagnostics.get(name)
    return figures


# The objective of each method, for results.json written before it was recorded there.
OBJECTIVES = {"bert": "masked", "masked_speech": "masked", "gpt": "autoregressive", "apc": "autoregressive",
              "simclr": "joint-embedding", "byol": "joint-embedding"}


def experiments(rows: list[dict]) -> list[dict]:
    """One record per experiment (runs that differ only in seed pooled: results.seed_groups), each
    figure as {mean, sd, n, ci95} over the seeds (stats.t_interval); grouped by (modality, data,
    probe task), best mean linear accuracy first within a group."""
    flat = []
    for runs in seed_groups(rows)[0]:
        first, per_run = runs[0], [run_figures(r) for r in runs]
        names = dict.fromkeys(name for figures in per_run for name in figures)
        values = {name: [f[name] for f in per_run if f.get(name) is not None] for name in names}
        flat.append({
            "modality": first["modality"], "objective": first.get("objective") or OBJECTIVES.get(first["method"]),
            "data": first["data"], "task": (first["probe"] or {}).get("task"),
            "protocol": protocol_label(first["probe"]),
            "method": first["method"], "model": first["model"], "params": first["params"],
            "baseline": bool((first.get("extra") or {}).get("baseline")),  # an encoder trained elsewhere (eval/baselines.py)
            "steps": (first.get("train") or {}).get("steps"), "seeds": [r["seed"] for r in runs],
            "figures": {name: t_interval(v) if v else None for name, v in values.items()},
            "per_run": per_run,  # each seed's own figures, in the order of seeds
            "paths": [r.get("path") for r in runs],
        })
    linear = lambda f: (f["figures"]["linear_acc"] or {}).get("mean") or 0  # noqa: E731
    flat.sort(key=lambda f: (f["modality"], f["data"], str(f["task"]), f["protocol"], -linear(f)))
    return flat


def primary_metric(row: dict) -> float:
    """An ICL task's headline score: choice accuracy where it has choices, else exact match."""
    return row["acc"] if "acc" in row else row["exact_match"]


def icl_groups(results: dict) -> dict[str, dict[int, tuple[int, int]]]:
    """{group: {shots: (correct, n)}} of a run's in-context scores, pooled over the tasks of a group:
    each task's split (trained: families trained on, asked about unseen words; held_out: families
    never trained on; unseen: a model trained on other text; user: JSONL tasks), and for the tasks
    scored with control labels, "context, gold" beside "context, random" / "context, flipped"."""
    tasks = (results.get("icl_meta") or {}).get("tasks", {})
    controls = results.get("icl_controls") or {}
    control_tasks = {task for scores in controls.values() for task in scores}
    groups: dict[str, dict[int, list[int]]] = {}

    def add(group: str, by_k: dict) -> None:
        for k, row in by_k.items():
            counts = groups.setdefault(group, {}).setdefault(int(k), [0, 0])
            counts[0] += round(primary_metric(row) * row["n"])
            counts[1] += row["n"]

    for task, by_k in (results.get("icl") or {}).items():
        add(tasks.get(task, {}).get("split", "all tasks"), by_k)
        if task in control_tasks:
            add(f"context, {(results.get('icl_meta') or {}).get('labels', 'gold')}", by_k)
    for labels, scores in controls.items():
        for by_k in scores.values():
            add(f"context, {labels}", by_k)
    return {g: {k: tuple(c) for k, c in sorted(by_k.items())} for g, by_k in groups.items()}


GROUPS = ("trained", "held_out", "unseen", "user", "all tasks", "context, gold", "context, random", "context, flipped")


def group_order(group: str):
    """How groups are listed: trained families first, then held-out ones, the others, the context controls last."""
    return (GROUPS.index(group) if group in GROUPS else len(GROUPS), group)


def run_label(results: dict) -> str:
    """How a run is named in comparisons: its model, and its data where that is not icl_mix itself."""
    return results["model"] if results["data"] == "icl_mix" else f"{results['model']} ({results['data']})"


def scaling_rows(results: list[dict]) -> list[tuple[int, str, str, int, int, int]]:
    """(params, run label, group, shots, correct, n) of every run that has ICL scores, smallest model first."""
    rows = [(r["params"], run_label(r), group, k, correct, n)
            for r in results for group, by_k in icl_groups(r).items() for k, (correct, n) in by_k.items()]
    return sorted(rows)
