"""`ssl-zoo export`: a trained model in another library's format, so that it can leave the zoo.

format=hf, GPT: a Hugging Face GPT-2 folder (config.json, model.safetensors, tokenizer.json and its
config): `GPT2LMHeadModel.from_pretrained(DIR)` and `PreTrainedTokenizerFast.from_pretrained(DIR)`
load it, and its logits are ours. Our blocks are GPT-2's (pre-LN, one fused q/k/v projection, a 4x
GELU MLP, learned positions, a tied output layer); GPT-2 stores its projections as Conv1D, (in, out),
the transpose of nn.Linear's weight, and always has biases (zeros where ours has none).

format=torchvision, a ResNet encoder (SimCLR, BYOL on model=resnet18 / resnet50): the torchvision
model's own state dict (model.safetensors, no `backbone.` prefix) and config.json naming the
architecture and the stem; with the CIFAR stem, torchvision's model takes it once its first layers
are rebuilt the same way (config.json says how), and `fc` is the identity: the model returns features.

format=s3prl, a speech encoder (masked speech, APC, data2vec): a folder with the checkpoint and a
`hubconf.py` whose `ssl_zoo_upstream` builds `SpeechUpstream`, s3prl's upstream interface:
`torch.hub.load(DIR, "ssl_zoo_upstream", source="local")`, then `upstream(wavs)["hidden_states"]`.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from omegaconf import DictConfig
from safetensors.torch import save
from torch import nn

from ssl_zoo.build import require_values
from ssl_zoo.checkpoint import load_method
from ssl_zoo.data.base import Waves
from ssl_zoo.data.tokenizer import BOS_ID, EOS_ID, MASK_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID
from ssl_zoo.errors import UserError
from ssl_zoo.nn.resnet import ResNet
from ssl_zoo.nn.transformer import Transformer

FORMATS = {"hf": ("gpt",), "torchvision": ("simclr", "byol"),  # format: the methods it takes
           "s3prl": ("masked_speech", "apc", "data2vec")}

HUBCONF = '''"""torch.hub entry point of an ssl-zoo speech encoder, in s3prl's upstream interface:
    upstream = torch.hub.load(this folder, "ssl_zoo_upstream", source="local")
    upstream(wavs)["hidden_states"]  # wavs: a list of 1-D waveforms at the encoder's sample rate
"""
from pathlib import Path

dependencies = ["torch", "ssl_zoo"]


def ssl_zoo_upstream(ckpt=None, **kwargs):
    from ssl_zoo.commands.export import SpeechUpstream

    return SpeechUpstream(ckpt or Path(__file__).with_name("last.ckpt"))
'''


class SpeechUpstream(nn.Module):
    """An ssl-zoo speech encoder as an s3prl upstream: forward(wavs), a list of 1-D waveforms at the
    encoder's sample rate (s3prl's: 16 kHz), -> {"hidden_states": [(B, T, C) for the log-mel input's
    projection and each block, the last after the final LayerNorm], "last_hidden_state": the last};
    frames after a clip's end are padding. One frame every `get_downsample_rates()` samples."""

    def __init__(self, ckpt: str | Path):
        super().__init__()
        method, _ = load_method(ckpt, "cpu")
        if method.modality != "speech":
            raise UserError(f"{ckpt} holds a {method.name} model; an s3prl upstream needs a speech checkpoint "
                            "(masked_speech, apc or data2vec on speech)")
        self.method = method.eval()
        self.sample_rate = method.frontend.sample_rate

    def get_downsample_rates(self, key: str = "hidden_states") -> int:
        return self.method.frontend.hop  # samples per frame

    def forward(self, wavs: list[torch.Tensor]) -> dict:
        device = next(self.method.parameters()).device
        lengths = torch.tensor([len(w) for w in wavs], device=device)
        audio = nn.utils.rnn.pad_sequence([w.to(device).float() for w in wavs], batch_first=True)  # (B, S)
        feats, real = self.method.log_mel(Waves(audio, lengths))  # (B, T, n_mels), (B, T)
        layers = self.method.backbone(feats, real, all_layers=True)
        return {"hidden_states": layers, "last_hidden_state": layers[-1]}


def gpt2_config(model: Transformer) -> dict:
    """GPT-2's config.json for our transformer: the same sizes, exact GELU, LayerNorm eps 1e-5."""
    cfg = model.cfg
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": cfg.vocab_size, "n_positions": cfg.block_size, "n_embd": cfg.n_embd, "n_layer": cfg.n_layer,
        "n_head": cfg.n_head, "n_inner": 4 * cfg.n_embd, "activation_function": "gelu",  # exact, as nn.GELU()
        "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout, "attn_pdrop": cfg.dropout,
        "layer_norm_epsilon": model.ln_f.eps, "initializer_range": 0.02, "scale_attn_weights": True,
        "tie_word_embeddings": model.lm_head.weight is model.tok_emb.weight,
        "bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "pad_token_id": PAD_ID,
    }


def gpt2_weights(model: Transformer) -> dict[str, torch.Tensor]:
    """Our GPT's weights under GPT-2's names (Linear (out, in) -> Conv1D (in, out))."""
    ours = model.state_dict()
    n = model.cfg.n_embd

    def bias(name: str, size: int) -> torch.Tensor:  # model.bias=false: GPT-2 adds zeros
        return ours.get(name, torch.zeros(size))

    out = {"transformer.wte.weight": ours["tok_emb.weight"], "transformer.wpe.weight": ours["pos_emb.weight"],
           "transformer.ln_f.weight": ours["ln_f.weight"], "transformer.ln_f.bias": bias("ln_f.bias", n)}
    for i in range(model.cfg.n_layer):
        a, h = f"blocks.{i}.", f"transformer.h.{i}."
        for ln in ("ln_1", "ln_2"):
            out[h + f"{ln}.weight"], out[h + f"{ln}.bias"] = ours[a + f"{ln}.weight"], bias(a + f"{ln}.bias", n)
        for theirs, mine, width in (("attn.c_attn", "attn.qkv", 3 * n), ("attn.c_proj", "attn.proj", n),
                                    ("mlp.c_fc", "mlp.0", 4 * n), ("mlp.c_proj", "mlp.2", n)):
            out[h + f"{theirs}.weight"] = ours[a + f"{mine}.weight"].t()
            out[h + f"{theirs}.bias"] = bias(a + f"{mine}.bias", width)
    if model.lm_head.weight is not model.tok_emb.weight:
        out["lm_head.weight"] = ours["lm_head.weight"]
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in out.items()}


def torchvision_files(encoder) -> dict[str, bytes | str]:
    """A ResNet encoder as torchvision's state dict and the config that rebuilds its stem."""
    if not isinstance(encoder, ResNet):
        raise UserError(f"format=torchvision takes a ResNet encoder (model=resnet18 or resnet50), not "
                        f"{type(encoder).__name__}; train with model=resnet18")
    cifar = encoder.net.conv1.kernel_size == (3, 3)
    arch = "resnet50" if type(encoder.net.layer1[0]).__name__ == "Bottleneck" else "resnet18"
    config = {"library": "torchvision", "arch": arch, "cifar_stem": cifar, "fc": "identity", "out_dim": encoder.out_dim,
              "rebuild": ("m = torchvision.models.%s(weights=None); " % arch
                          + ("m.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False); m.maxpool = torch.nn.Identity(); " if cifar else "")
                          + "m.fc = torch.nn.Identity(); m.load_state_dict(safetensors.torch.load_file('model.safetensors'))")}
    weights = {k: v.detach().cpu().contiguous() for k, v in encoder.net.state_dict().items()}
    return {"config.json": json.dumps(config, indent=2), "model.safetensors": save(weights, metadata={"format": "pt"})}


def tokenizer_files(tokenizer) -> dict[str, str]:
    """tokenizer.json (ours, as it is) and the config that makes it a PreTrainedTokenizerFast."""
    names = dict(zip(("pad_token", "unk_token", "mask_token", "bos_token", "eos_token"),
                     (SPECIAL_TOKENS[i] for i in (PAD_ID, UNK_ID, MASK_ID, BOS_ID, EOS_ID))))
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": None, "clean_up_tokenization_spaces": False,
              **names}
    return {"tokenizer.json": tokenizer.to_str(), "tokenizer_config.json": json.dumps(config, indent=2),
            "special_tokens_map.json": json.dumps(names, indent=2)}


def write_folder(out: Path, files: dict[str, bytes | str]) -> None:
    """All of out's files or none: written into a temporary sibling folder, then renamed into place
    (an earlier export at out is replaced only once the new one is whole)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
        old = None
        if out.exists():
            old = out.parent / f"{tmp.name}.old"
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"cannot write the export to {out}: {e.strerror or e}; give another folder with out=...") from None


def check_out(out: Path) -> None:
    if out.is_file():
        raise UserError(f"out={out} is a file; give a folder for the export (out=DIR)")
    if out.is_dir() and any(out.iterdir()) and not any((out / name).is_file() for name in ("config.json", "hubconf.py")):
        raise UserError(f"out={out} is a folder with other files in it; give a new or empty folder (or an earlier export's)")


def export(cfg: DictConfig) -> Path:
    require_values(cfg)
    if cfg.format not in FORMATS:
        raise UserError(f"unknown export format '{cfg.format}'; choose one of: {', '.join(FORMATS)}")
    out = Path(cfg.out)
    check_out(out)
    method, _ = load_method(cfg.checkpoint, "cpu")
    if method.name not in FORMATS[cfg.format]:
        raise UserError(f"{cfg.checkpoint} holds a {method.name} model; format={cfg.format} exports "
                        f"{' or '.join(FORMATS[cfg.format])} checkpoints only")
    files, how = export_files(cfg.format, method, Path(cfg.checkpoint))
    write_folder(out, files)
    print(f"written: {out} ({how.format(out=out)})")
    return out


def export_files(fmt: str, method, checkpoint: Path) -> tuple[dict[str, bytes | str], str]:
    """The files of the export in format fmt, and how to load them."""
    if fmt == "s3prl":
        if method.modality != "speech":
            raise UserError(f"{checkpoint} holds a {method.name} model of {method.modality}; format=s3prl exports "
                            "speech encoders only")
        return ({"hubconf.py": HUBCONF, "last.ckpt": checkpoint.read_bytes()},
                "torch.hub.load('{out}', 'ssl_zoo_upstream', source='local'): an s3prl upstream")
    if fmt == "torchvision":
        return torchvision_files(method.backbone), "a torchvision state dict; {out}/config.json says how to rebuild the model"
    model = method.backbone
    files = {"config.json": json.dumps(gpt2_config(model), indent=2),
             "model.safetensors": save(gpt2_weights(model), metadata={"format": "pt"}),
             **tokenizer_files(method.tokenizer)}
    return files, "GPT-2 for Hugging Face transformers: GPT2LMHeadModel.from_pretrained('{out}')"


def run(cfg: DictConfig) -> None:
    export(cfg)
