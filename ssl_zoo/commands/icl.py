"""`ssl-zoo icl`: zero-, one- and few-shot accuracy of a trained GPT (no gradient step), printed as a
table and merged into its run's results.json under "icl"."""

from omegaconf import DictConfig

from ssl_zoo.build import require_values
from ssl_zoo.commands.generate import load_text_model
from ssl_zoo.eval.icl import ICLConfig, evaluate_gpt
from ssl_zoo.report import icl_table
from ssl_zoo.results import add_to_results


def run(cfg: DictConfig) -> dict:
    require_values(cfg)
    icl_cfg = ICLConfig(cfg.task, cfg.shots, cfg.num_queries, cfg.describe, cfg.digits, cfg.seed)
    scores = evaluate_gpt(load_text_model(cfg.checkpoint, "gpt", cfg.device, command="icl"), icl_cfg)
    print(icl_table(scores))
    print(f"written to {add_to_results(cfg.checkpoint, 'icl', scores)}")
    return scores
