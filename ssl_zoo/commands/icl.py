"""`ssl-zoo icl`: zero-, one- and few-shot accuracy of a trained GPT (no gradient step), printed as a
table and merged into its run's results.json under "icl"."""

from omegaconf import DictConfig

from ssl_zoo.build import build_datamodule, require_values
from ssl_zoo.commands.generate import load_text_model
from ssl_zoo.eval.icl import ICLConfig, evaluate_gpt
from ssl_zoo.report import icl_table
from ssl_zoo.results import add_icl_to_results


def run(cfg: DictConfig) -> dict:
    require_values(cfg)
    icl_cfg = ICLConfig(cfg.task, cfg.shots, cfg.num_queries, cfg.describe, cfg.labels, list(cfg.controls),
                        cfg.control_tasks, cfg.digits, cfg.seed, cfg.too_long)
    icl_cfg.check()  # before the model is loaded
    method = load_text_model(cfg.checkpoint, "gpt", cfg.device, command="icl")
    # the data it was trained on: its text to check the queries against, its families trained and held out
    icl = evaluate_gpt(method, icl_cfg, build_datamodule(method.run_config, **method.data_settings()))
    print(icl_table(icl))
    print(f"written to {add_icl_to_results(cfg.checkpoint, icl)}")
    return icl
