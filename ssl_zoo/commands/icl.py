"""`ssl-zoo icl`: zero-, one- and few-shot accuracy of a trained GPT (no gradient step), printed as a
table and merged into its run's results.json under "icl". With export_tasks=DIR it also writes the
same prompts as lm-evaluation-harness tasks, so that lm-eval scores any model on exactly them."""

import json
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

from ssl_zoo.atomic import atomic_write, check_can_write
from ssl_zoo.build import build_datamodule, require_values
from ssl_zoo.device import pick_device
from ssl_zoo.errors import UserError
from ssl_zoo.eval.baselines import HFScorer, hf_folder
from ssl_zoo.eval.icl import GPTScorer, ICLConfig, evaluate_gpt, icl_block, longest, prompted, prompts_of
from ssl_zoo.infer.load import load_text_model
from ssl_zoo.report import icl_table
from ssl_zoo.results import NO_TRAINING, add_icl_to_results, write_json
from ssl_zoo.run.folder import RunFolder
from ssl_zoo.settings import PATH, PATH_OR_NULL, Names


def run(cfg: DictConfig) -> dict:
    require_values(cfg, **{"": {"task": Names(nullable=True, single=True), "checkpoint": PATH, "out": PATH_OR_NULL,
                                "export_tasks": PATH_OR_NULL}})
    given = OmegaConf.to_container(cfg, resolve=True)  # plain lists, as ICLConfig checks them
    icl_cfg = ICLConfig(given["task"], given["shots"], given["num_queries"], given["describe"], given["labels"], given["controls"],
                        given["control_tasks"], given["digits"], given["seed"], given["too_long"])
    icl_cfg.check()  # before the model is loaded
    foreign = str(cfg.checkpoint).startswith("hf:")
    if not foreign and (Path(cfg.checkpoint) / "config.json").is_file():
        raise UserError(f"checkpoint {cfg.checkpoint} is a Hugging Face model folder; give checkpoint=hf:{cfg.checkpoint} "
                        "(and out=DIR for its scores)")
    if cfg.out is not None and not foreign:
        raise UserError(f"out={cfg.out} is for checkpoint=hf:DIR; a run's scores go into its own results.json (drop out=)")
    if cfg.out is not None:
        check_can_write(Path(cfg.out), "out", folder=True)
    if cfg.export_tasks:
        check_can_write(Path(cfg.export_tasks), "export_tasks", folder=True)
    if foreign:
        return icl_foreign(cfg, icl_cfg)
    method = load_text_model(cfg.checkpoint, "gpt", cfg.device, command="icl")
    export_tasks(cfg, icl_cfg, GPTScorer(method))
    # the data it was trained on: its text to check the queries against, its families trained and held out
    icl = evaluate_gpt(method, icl_cfg, build_datamodule(method.run_config, **method.data_settings()))
    print(icl_table(icl))
    print(f"written to {add_icl_to_results(cfg.checkpoint, icl)}")
    return icl


def icl_foreign(cfg: DictConfig, icl_cfg: ICLConfig) -> dict:
    """checkpoint=hf:DIR: a causal LM trained elsewhere asked the same prompts (its training text is not
    ours to search: no contamination report); results to cfg.out (default outputs/baselines/hf-<name>-icl)."""
    folder = hf_folder(str(cfg.checkpoint)[3:], "checkpoint")
    scorer = HFScorer(folder, str(pick_device(cfg.device)))
    export_tasks(cfg, icl_cfg, scorer)
    icl = icl_block(scorer, icl_cfg)
    print(icl_table(icl))
    label = f"hf:{folder.name}"
    results = {"method": label, "modality": "text", "objective": "baseline", "data": "icl", "model": label,
               "params": sum(p.numel() for p in scorer.model.parameters()), "seed": None, "train": dict(NO_TRAINING),
               "probe": None, "extra": {"baseline": True, "encoder": str(cfg.checkpoint)}, **icl}
    out = Path(cfg.out) if cfg.out else Path("outputs") / "baselines" / f"hf-{folder.name}-icl"
    print(f"written to {write_json(RunFolder(out).results, results)}")
    return icl


def export_tasks(cfg: DictConfig, icl_cfg: ICLConfig, scorer) -> None:
    if cfg.export_tasks:
        names = write_tasks(icl_cfg, scorer, Path(cfg.export_tasks))
        print(f"{len(names)} lm-eval tasks written to {cfg.export_tasks}: lm-eval --include_path {cfg.export_tasks} --tasks "
              + ",".join(names[:2]) + ("..." if len(names) > 2 else ""))


def write_tasks(cfg: ICLConfig, scorer, out: Path) -> list[str]:
    """Our ICL prompts as lm-eval tasks in out: for each task and shot count, <name>.jsonl (one
    {prompt, choices, gold, target} per query) and <name>.yaml reading it, plus <name>_gen.yaml
    (greedy generation up to the line's end, exact match after stripping). Returns the task names."""
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for task_name in cfg.tasks:
        task = prompted(task_name, cfg)
        for k in cfg.shots:
            prompts = prompts_of(task, k, cfg)
            if longest(scorer, prompts) > scorer.block_size:
                continue  # as `ssl-zoo icl` skips it
            name = f"ssl_zoo_{task.name}_{k}shot"
            docs = [{"prompt": p, "choices": q.choices or [], "gold": q.choices.index(q.output) if q.choices else -1,
                     "target": q.output} for p, q in prompts]
            atomic_write(out / f"{name}.jsonl", "".join(json.dumps(d) + "\n" for d in docs))
            source = {"dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str((out / f"{name}.jsonl").resolve())}},
                      "test_split": "test", "doc_to_text": "prompt"}
            # our greedy answer: the first line of as many tokens as the longest answer (and its newline) + 2
            tokens = max(len(scorer.encode(" " + q.output + "\n")) + 2 for _, q in prompts)
            generation = {"task": f"{name}_gen", **source, "output_type": "generate_until", "doc_to_target": "target",
                          "generation_kwargs": {"until": ["\n"], "do_sample": False, "max_gen_toks": tokens},
                          "filter_list": [{"name": "strip", "filter": [{"function": "regex", "regex_pattern": r"^\s*(.*?)\s*$"},
                                                                       {"function": "take_first"}]}],
                          "metric_list": [{"metric": "exact_match"}]}
            atomic_write(out / f"{name}_gen.yaml", yaml.safe_dump(generation, sort_keys=False))
            names.append(f"{name}_gen")
            if task.queries[0].choices:
                choice = {"task": name, **source, "output_type": "multiple_choice", "doc_to_choice": "choices",
                          "doc_to_target": "gold", "target_delimiter": " ",
                          "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}]}
                atomic_write(out / f"{name}.yaml", yaml.safe_dump(choice, sort_keys=False))
                names.append(name)
    return names
