"""`ssl-zoo export`: a trained model in another library's format, so that it can leave the zoo.

format=hf, GPT: a Hugging Face GPT-2 folder (config.json, model.safetensors, tokenizer.json and its
config): `GPT2LMHeadModel.from_pretrained(DIR)` and `PreTrainedTokenizerFast.from_pretrained(DIR)`
load it, and its logits are ours. Our blocks are GPT-2's (pre-LN, one fused q/k/v projection, a 4x
GELU MLP, learned positions, a tied output layer); GPT-2 stores its projections as Conv1D, (in, out),
the transpose of nn.Linear's weight, and always has biases (zeros where ours has none).

format=hf, BERT: no class of transformers computes our BERT (pre-LN blocks, no LayerNorm on the
embeddings, a bare tied output layer), so the folder carries its model code (modeling_ssl_zoo.py, from
nn/hf_masked_lm.py; it needs the ssl-zoo package) and config.json's auto_map points at it:
`AutoModelForMaskedLM.from_pretrained(DIR, trust_remote_code=True)`, and `pipeline("fill-mask", ...)`
gives `ssl-zoo fill`'s candidates.

format=torchvision, a ResNet encoder (SimCLR, BYOL on model=resnet18 / resnet50): the torchvision
model's own state dict (model.safetensors, no `backbone.` prefix) and config.json naming the
architecture and the stem; with the CIFAR stem, torchvision's model takes it once its first layers
are rebuilt the same way (config.json says how), and `fc` is the identity: the model returns features.

format=timm, a ResNet or ViT image encoder (SimCLR, BYOL, MAE, AIM, data2vec on images): a
model.safetensors that timm's own classes load strictly, and config.json with the constructor's
arguments. timm names a ResNet's layers as torchvision does (the CIFAR stem rebuilt the same way); a
ViT becomes timm's VisionTransformer without a class token, average-pooled, with the final LayerNorm
on every patch before pooling as ours (fc_norm=False) and our LayerNorm eps (1e-5; timm's is 1e-6).

format=s3prl, a speech encoder (masked speech, APC, data2vec): a folder with the checkpoint and a
`hubconf.py` whose `ssl_zoo_upstream` builds `SpeechUpstream`, s3prl's upstream interface:
`torch.hub.load(DIR, "ssl_zoo_upstream", source="local")`, then `upstream(wavs)["hidden_states"]`.
"""

import json
import os
import shutil
import tempfile
from importlib.util import find_spec
from pathlib import Path

import torch
from omegaconf import DictConfig
from safetensors.torch import save
from torch import nn

from ssl_zoo.atomic import check_can_write
from ssl_zoo.build import require_values
from ssl_zoo.checkpoint import load_method
from ssl_zoo.data.base import Waves
from ssl_zoo.data.tokenizer import BOS_ID, EOS_ID, MASK_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID
from ssl_zoo.errors import UserError
from ssl_zoo.nn.resnet import ResNet
from ssl_zoo.nn.transformer import Transformer
from ssl_zoo.nn.vit import ViT
from ssl_zoo.run.folder import LAST_CHECKPOINT
from ssl_zoo.settings import PATH

FORMATS = {"hf": ("gpt", "bert"), "torchvision": ("simclr", "byol"),  # format: the methods it takes
           "timm": ("simclr", "byol", "mae", "aim", "data2vec"),
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


def masked_lm_files(model: Transformer) -> dict[str, bytes | str]:
    """Our BERT as a Hugging Face masked LM with remote code: config.json (auto_map), the weights under
    the wrapper's names (the tied output layer stored once, as its embedding), modeling_ssl_zoo.py."""
    cfg, tied = model.cfg, model.lm_head.weight is model.tok_emb.weight
    config = {"architectures": ["SslZooForMaskedLM"], "model_type": "ssl_zoo_transformer",
              "auto_map": {"AutoConfig": "modeling_ssl_zoo.SslZooConfig",
                           "AutoModelForMaskedLM": "modeling_ssl_zoo.SslZooForMaskedLM"},
              "vocab_size": cfg.vocab_size, "block_size": cfg.block_size, "n_layer": cfg.n_layer, "n_head": cfg.n_head,
              "n_embd": cfg.n_embd, "bias": cfg.bias, "tie_word_embeddings": tied, "pad_token_id": PAD_ID}
    weights = {f"transformer.{k}": v.float() for k, v in model.state_dict().items() if not (tied and k == "lm_head.weight")}
    return {"config.json": json.dumps(config, indent=2), "model.safetensors": weights_file(weights),
            "modeling_ssl_zoo.py": Path(find_spec("ssl_zoo.nn.hf_masked_lm").origin).read_text()}  # found, not imported


def resnet_files(encoder, library: str) -> dict[str, bytes | str]:
    """A ResNet encoder as torchvision's (or timm's: the same names) state dict, and the config that
    rebuilds its stem."""
    if not isinstance(encoder, ResNet):
        raise UserError(f"format={library} takes a ResNet encoder (model=resnet18 or resnet50){' or a ViT' * (library == 'timm')}, "
                        f"not {type(encoder).__name__}; train with model=resnet18")
    cifar = encoder.net.conv1.kernel_size == (3, 3)
    arch = "resnet50" if type(encoder.net.layer1[0]).__name__ == "Bottleneck" else "resnet18"
    build = f"torchvision.models.{arch}(weights=None)" if library == "torchvision" else f"timm.create_model('{arch}', num_classes=0)"
    config = {"library": library, "arch": arch, "cifar_stem": cifar, "fc": "identity", "out_dim": encoder.out_dim,
              "rebuild": (f"m = {build}; "
                          + ("m.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False); m.maxpool = torch.nn.Identity(); " if cifar else "")
                          + "m.fc = torch.nn.Identity(); m.load_state_dict(safetensors.torch.load_file('model.safetensors'))")}
    return {"config.json": json.dumps(config, indent=2), "model.safetensors": weights_file(encoder.net.state_dict())}


def timm_vit_files(vit: ViT) -> dict[str, bytes | str]:
    """Our ViT as timm's VisionTransformer: the patch projection as its convolution, positions without
    a class token, each block's layers under timm's names, the final LayerNorm as `norm`."""
    model, p, n = vit.transformer, vit.patch_size, vit.transformer.cfg.n_embd
    ours = model.state_dict()

    def bias(name: str, size: int) -> torch.Tensor:  # model.bias=false: timm's layers have biases, zero here
        return ours.get(name, torch.zeros(size))

    # our patch vectors are ordered (row, column, channel): the Linear's (D, P*P*C) is the conv's (D, C, P, P)
    out = {"patch_embed.proj.weight": ours["in_proj.weight"].reshape(n, p, p, vit.channels).permute(0, 3, 1, 2),
           "patch_embed.proj.bias": ours["in_proj.bias"], "pos_embed": ours["pos_emb.weight"][None],
           "norm.weight": ours["ln_f.weight"], "norm.bias": bias("ln_f.bias", n)}
    for i in range(model.cfg.n_layer):
        a, t = f"blocks.{i}.", f"blocks.{i}."
        for mine, theirs, width in (("ln_1", "norm1", n), ("attn.qkv", "attn.qkv", 3 * n), ("attn.proj", "attn.proj", n),
                                    ("ln_2", "norm2", n), ("mlp.0", "mlp.fc1", 4 * n), ("mlp.2", "mlp.fc2", n)):
            out[t + f"{theirs}.weight"], out[t + f"{theirs}.bias"] = ours[a + f"{mine}.weight"], bias(a + f"{mine}.bias", width)
    kwargs = {"img_size": vit.image_size, "patch_size": p, "in_chans": vit.channels, "embed_dim": n, "depth": model.cfg.n_layer,
              "num_heads": model.cfg.n_head, "mlp_ratio": 4.0, "qkv_bias": True, "class_token": False, "global_pool": "avg",
              "fc_norm": False, "num_classes": 0}
    config = {"library": "timm", "arch": "VisionTransformer", "kwargs": kwargs, "layer_norm_eps": model.ln_f.eps,
              "out_dim": n, "rebuild": ("m = timm.models.vision_transformer.VisionTransformer(**kwargs, "
                                        "norm_layer=functools.partial(torch.nn.LayerNorm, eps=layer_norm_eps)); "
                                        "m.load_state_dict(safetensors.torch.load_file('model.safetensors'))")}
    return {"config.json": json.dumps(config, indent=2), "model.safetensors": weights_file(out)}


def weights_file(weights: dict[str, torch.Tensor]) -> bytes:
    return save({k: v.detach().to("cpu").contiguous() for k, v in weights.items()}, metadata={"format": "pt"})


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
    tmp = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
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
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"cannot write the export to {out}: {e.strerror or e}; give another folder with out=...") from None


# what an export writes (every format): a folder of these only is an earlier export, replaced whole
EXPORTED = {"config.json", "model.safetensors", "modeling_ssl_zoo.py", "tokenizer.json", "tokenizer_config.json",
            "special_tokens_map.json", "hubconf.py", Path(LAST_CHECKPOINT).parts[0], "__pycache__"}


def check_out(out: Path) -> None:
    if out.is_file():
        raise UserError(f"out={out} is a file; give a folder for the export (out=DIR)")
    if not out.exists() and out.suffix.lower() in (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".json", ".onnx"):
        raise UserError(f"out={out} names a file; an export is a folder of files (config.json, model.safetensors, ...): "
                        f"give the folder, e.g. out={out.parent / out.stem}")
    if out.is_dir() and (others := sorted(p.name for p in out.iterdir() if p.name not in EXPORTED)):
        raise UserError(f"out={out} is a folder with other files in it ({', '.join(others[:3])}); give a new or empty folder "
                        "(or an earlier export's, which is replaced whole)")


def export(cfg: DictConfig) -> Path:
    require_values(cfg, **{"": {"checkpoint": PATH, "out": PATH}})
    if cfg.format not in FORMATS:
        raise UserError(f"unknown export format '{cfg.format}'; choose one of: {', '.join(FORMATS)}")
    out = Path(cfg.out)
    check_out(out)
    check_can_write(out, "out", folder=True)  # before the model is loaded
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
        return ({"hubconf.py": HUBCONF, LAST_CHECKPOINT: checkpoint.read_bytes()},
                "torch.hub.load('{out}', 'ssl_zoo_upstream', source='local'): an s3prl upstream")
    if fmt == "torchvision" or (fmt == "timm" and not isinstance(method.backbone, ViT)):
        return resnet_files(method.backbone, fmt), f"a {fmt} state dict; {{out}}/config.json says how to rebuild the model"
    if fmt == "timm":
        return timm_vit_files(method.backbone), "timm's VisionTransformer; {out}/config.json holds its arguments"
    model, tokenizer = method.backbone, tokenizer_files(method.tokenizer)
    if method.name == "bert":
        return ({**masked_lm_files(model), **tokenizer},
                "a masked LM for Hugging Face transformers: AutoModelForMaskedLM.from_pretrained('{out}', trust_remote_code=True)")
    files = {"config.json": json.dumps(gpt2_config(model), indent=2),
             "model.safetensors": weights_file(gpt2_weights(model)), **tokenizer}
    return files, "GPT-2 for Hugging Face transformers: GPT2LMHeadModel.from_pretrained('{out}')"


def run(cfg: DictConfig) -> None:
    export(cfg)
