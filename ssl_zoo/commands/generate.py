"""`ssl-zoo generate` (a GPT continues a prompt) and `ssl-zoo fill` (a BERT's candidates for each [MASK])."""

from omegaconf import DictConfig

from ssl_zoo.build import require_values
from ssl_zoo.infer.load import load_text_model
from ssl_zoo.infer.text import SamplingSettings, fill_masks, generate_text, top_1
from ssl_zoo.settings import FLAG, PATH


def generate(cfg: DictConfig) -> None:
    require_values(cfg, **{"": (SamplingSettings, {"compile": FLAG, "checkpoint": PATH})})
    settings = SamplingSettings(cfg.max_new_tokens, cfg.temperature, cfg.top_k, cfg.top_p, cfg.seed)
    method = load_text_model(cfg.checkpoint, "gpt", cfg.device, precision=cfg.precision)
    pieces = generate_text(method, str(cfg.prompt), settings, compile=cfg.compile)  # refuses a bad prompt before printing it
    print(cfg.prompt, end="", flush=True)
    for piece in pieces:
        print(piece, end="", flush=True)
    print()


def fill(cfg: DictConfig) -> None:
    require_values(cfg, **{"": {"checkpoint": PATH}})
    method = load_text_model(cfg.checkpoint, "bert", cfg.device)
    candidates = fill_masks(method, str(cfg.text), cfg.top_k)
    for n, options in enumerate(candidates, 1):
        print(f"[MASK] {n}:")
        for token, prob in options:
            print(f"  {prob:6.3f}  {token!r}")
    print(f"top-1: {top_1(str(cfg.text), candidates)}")

