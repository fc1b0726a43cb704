"""The checkpoint: its format, and reading it back into a method (run/checkpoint_io.py writes it).

A checkpoint is Lightning's (weights, optimizer and loop state, callback state) plus
`ssl_zoo_config`, the resolved run config that rebuilds the method without its data, and
`ssl_zoo_format`, the version of that layout. Whatever else a model needs to run is the method's own
state, written and read by its `on_save_checkpoint` / `on_load_checkpoint` (text: the tokenizer).
Reading never runs code from the file (`torch.load(weights_only=True)`). Checkpoints of an older
layout are brought up to date as they are read (`upgrade`).
"""

from pathlib import Path

import torch
from omegaconf import OmegaConf

from ssl_zoo.build import build_method
from ssl_zoo.device import pick_device
from ssl_zoo.errors import UserError

CONFIG_KEY = "ssl_zoo_config"  # the resolved run config
FORMAT_KEY, FORMAT = "ssl_zoo_format", 3  # format 1 (no key) was written before ssl_zoo/checkpoint.py existed
HEADS_LEFT_BEHIND = ("online_head.", "online_acc.")  # trained with the encoder, not part of the model

# Format 1 named classes by where they lived then, and copied the batch size into the optimizer settings.
MOVED = {"ssl_zoo.data.image_views.ImageViews": "ssl_zoo.views.ImageViews"}
# Format 2 built data2vec from one config for all modalities (the encoder chose the class); format 3 has a
# class and a config per modality, each with its own settings only.
DATA2VEC = "ssl_zoo.methods.data2vec.Data2Vec"
DATA2VEC_OWN = {"Text": {"select_prob", "centre_positions", "probe_layer"}, "Speech": {"speech_mask_prob", "speech_span", "probe_layer"},
                "Image": {"image_mask_ratio", "image_block", "views"}}


def upgrade(config: dict) -> dict:
    """A stored run config of an older format, as the current code reads it (format 1 -> 3)."""
    def visit(node):
        if isinstance(node, dict):
            if node.get("_target_") in MOVED:
                node["_target_"] = MOVED[node["_target_"]]
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(config)
    (config.get("method", {}).get("optim") or {}).pop("batch_size", None)  # now the datamodule's, handed over
    method, model = config.get("method", {}), config.get("model", {})
    if method.get("_target_") == DATA2VEC:  # the class the encoder chose then, with the settings it read
        modality = ("Image" if model.get("_target_", "").endswith(".ViT")
                    else "Text" if model.get("vocab_size") is not None else "Speech")
        method["_target_"] = f"{DATA2VEC}{modality}"
        for key in set().union(*DATA2VEC_OWN.values()) - DATA2VEC_OWN[modality]:
            method.pop(key, None)
    return config


def read_checkpoint(path: str | Path, hint: str = "pass checkpoint=<run dir>/checkpoints/last.ckpt") -> dict:
    """Load an ssl-zoo checkpoint (weights_only: no code runs from the file), its config brought up to
    date; one-line errors."""
    path = Path(path)
    if path.is_dir():
        from ssl_zoo.run.folder import LAST_CHECKPOINT, RunFolder

        inside = next((p for p in (RunFolder(path).last_checkpoint, path / LAST_CHECKPOINT) if p.is_file()), None)
        raise UserError(f"checkpoint {path} is a folder, not a checkpoint file; "
                        + (f"give {inside}" if inside else hint))
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; {hint}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path} is not a readable checkpoint ({reason[:120]}); pass a last.ckpt written by ssl-zoo train") from None
    if not isinstance(ckpt, dict) or CONFIG_KEY not in ckpt or "state_dict" not in ckpt:
        raise UserError(f"{path} is not an ssl-zoo checkpoint (no run config inside); pass a last.ckpt written by ssl-zoo train")
    if ckpt.get(FORMAT_KEY, 1) > FORMAT:
        raise UserError(f"{path} was written by a newer ssl-zoo (checkpoint format {ckpt[FORMAT_KEY]}, this one reads "
                        f"up to {FORMAT}); upgrade ssl-zoo (pip install -U ssl-zoo)")
    if ckpt.get(FORMAT_KEY, 1) < FORMAT:
        ckpt[CONFIG_KEY] = upgrade(ckpt[CONFIG_KEY])
    return ckpt


def method_from(ckpt: dict):
    """(method with the checkpoint's weights and state, the run config it was trained with)."""
    cfg = OmegaConf.create(ckpt[CONFIG_KEY])
    method = build_method(cfg)
    method.load_state_dict({k: v for k, v in ckpt["state_dict"].items() if not k.startswith(HEADS_LEFT_BEHIND)})
    method.on_load_checkpoint(ckpt)  # what else the model needs to run (text: its tokenizer)
    method.run_config, method.trained_steps = cfg, ckpt.get("global_step")  # what it was trained with, how long
    return method, cfg


def load_method(path: str | Path, device: str = "cpu") -> tuple:
    """(method of the checkpoint at path on `device` (auto: the GPU where there is one), its run config)."""
    method, cfg = method_from(read_checkpoint(path))
    return method.to(pick_device(device)), cfg
