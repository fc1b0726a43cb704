"""Encoders trained elsewhere, probed and asked in context beside ours, from local files only.

    ssl-zoo probe encoder=hf:DIR data=python_stdlib      # a Hugging Face causal or masked LM folder
    ssl-zoo probe encoder=hf:DIR data=spoken_words       # a wav2vec 2.0 / HuBERT folder
    ssl-zoo probe encoder=torchvision:resnet18 weights=FILE data=shapes
    ssl-zoo probe encoder=timm:resnet18 weights=FILE data=shapes
    ssl-zoo icl checkpoint=hf:DIR task=...               # any local causal LM

Each foreign encoder is seen as the probe sees a method (`embed(batch) -> features`): a language
model reads our probe snippets as text (decoded from our tokens, encoded with its own tokenizer); a
speech model reads the waveforms at its own sample rate; an image model reads the images normalised
with the data's mean and std. Transformers give every layer, mean-pooled over the real positions,
for the probe's learned layer mix (as our text and speech methods). The same architecture with
random weights is the random-init baseline. Results go to outputs/baselines/<name>/results.json with
`extra.baseline: true`, and `ssl-zoo compare` lists them as baseline rows.
"""

import pickle
import re
from pathlib import Path

import torch
from torch import nn

from ssl_zoo.data.base import Waves
from ssl_zoo.errors import UserError
from ssl_zoo.eval.icl import GPTScorer
from ssl_zoo.nn.transformer import mean_pool

KINDS = ("hf", "torchvision", "timm")


def parse_encoder(spec: str) -> tuple[str, str]:
    kind, sep, name = str(spec).partition(":")
    if not sep or kind not in KINDS or not name:
        raise UserError(f"encoder={spec} is not one of hf:DIR, torchvision:NAME, timm:NAME (e.g. encoder=torchvision:resnet18 "
                        "weights=resnet18.pth)")
    return kind, name


class Foreign(nn.Module):
    """What the probe needs of a method, for an encoder trained elsewhere."""

    name = "baseline"
    objective = "baseline"

    def __init__(self, spec: str, modality: str):
        super().__init__()
        self.spec, self.modality = spec, modality

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def positive_pair(self, dataset, seed: int):
        return None  # no views of ours to align

    def baseline_embeddings(self) -> dict:
        return {}


def layers_pooled(hidden_states, mask: torch.Tensor) -> torch.Tensor:
    """Every layer's states (B, T, D), mean-pooled over the real positions (B, T): (B, L + 1, D)."""
    return torch.stack([mean_pool(h.float(), mask) for h in hidden_states], dim=1)


# --- Hugging Face -----------------------------------------------------------------------------
def hf_folder(name: str, key: str = "encoder") -> Path:
    folder = Path(name)
    if not (folder / "config.json").is_file():
        raise UserError(f"{key}=hf:{name} is not a Hugging Face model folder (no config.json in it); give a local folder "
                        "saved with save_pretrained (nothing is downloaded)")
    return folder


def hf_model(folder: Path, auto_class: str, random_init: bool, seed: int):
    import transformers

    auto = getattr(transformers, auto_class)
    try:
        if random_init:
            torch.manual_seed(seed)
            return auto.from_config(transformers.AutoConfig.from_pretrained(folder))
        return auto.from_pretrained(folder)
    except (ValueError, OSError, KeyError) as e:
        raise UserError(f"transformers cannot load {folder} as {auto_class}: {str(e).splitlines()[0]}") from None
    except pickle.UnpicklingError:  # torch.load with weights_only met something besides tensors: no code ran from it
        raise UserError(f"the weights in {folder} were not loaded: their pickle holds more than tensors, which a "
                        "safe load (weights_only) refuses; save them with save_pretrained (safetensors) from a source "
                        "you trust") from None


def context_size(config) -> int:
    sizes = [getattr(config, key, None) for key in ("max_position_embeddings", "n_positions", "n_ctx")]
    return next((s for s in sizes if isinstance(s, int) and s > 0), 512)


class HFText(Foreign):
    """A Hugging Face language model's every layer on our snippets, re-tokenised with its own tokenizer."""

    def __init__(self, spec: str, folder: Path, our_tokenizer, random_init: bool = False, seed: int = 0):
        from transformers import AutoTokenizer

        super().__init__(spec, "text")
        self.model = hf_model(folder, "AutoModel", random_init, seed).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        if self.tokenizer.pad_token is None:  # GPT-2 style tokenizers have none; padding is masked anyway
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.tokenizer.padding_side = "right"
        self.ours, self.max_length = our_tokenizer, context_size(self.model.config)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        texts = [self.ours.decode(row.tolist()) for row in ids]  # our tokens -> text -> theirs
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=self.max_length)
        enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        out = self.model(**enc, output_hidden_states=True)
        return layers_pooled(out.hidden_states, enc["attention_mask"].bool())  # (B, L + 1, D)


class HFSpeech(Foreign):
    """A wav2vec 2.0 / HuBERT folder's every layer, the clips resampled to its rate and normalised by its extractor."""

    def __init__(self, spec: str, folder: Path, sample_rate: int, random_init: bool = False, seed: int = 0):
        from transformers import AutoFeatureExtractor

        super().__init__(spec, "speech")
        self.model = hf_model(folder, "AutoModel", random_init, seed).eval()
        self.extractor = AutoFeatureExtractor.from_pretrained(folder)
        self.rate = sample_rate

    def embed(self, waves: Waves) -> torch.Tensor:
        import torchaudio

        target = self.extractor.sampling_rate
        audio, lengths = waves.audio.float().cpu(), waves.lengths.cpu()  # (B, S), (B,)
        if target != self.rate:  # the whole batch at once; each clip's length scaled with it
            audio = torchaudio.functional.resample(audio, self.rate, target)
            lengths = (lengths * target + self.rate - 1) // self.rate
        clips = [clip[:n] for clip, n in zip(audio, lengths.tolist())]
        enc = self.extractor([c.numpy() for c in clips], sampling_rate=target, return_tensors="pt", padding=True,
                             return_attention_mask=True)
        out = self.model(enc["input_values"].to(self.device), attention_mask=enc["attention_mask"].to(self.device),
                         output_hidden_states=True)
        frames = self.model._get_feat_extract_output_lengths(enc["attention_mask"].sum(1)).to(self.device)  # (B,)
        mask = torch.arange(out.hidden_states[0].shape[1], device=self.device)[None] < frames[:, None]
        return layers_pooled(out.hidden_states, mask)


class HFScorer(GPTScorer):
    """A Hugging Face causal LM seen as in-context learning needs it (ssl-zoo icl checkpoint=hf:DIR)."""

    def __init__(self, folder: Path, device: str = "cpu"):
        from transformers import AutoTokenizer

        self.model = hf_model(folder, "AutoModelForCausalLM", False, 0).eval().to(device)
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.block_size, self.device = context_size(self.model.config), torch.device(device)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(ids).logits

    @torch.no_grad()
    def greedy(self, contexts: list[list[int]], max_new_tokens: int) -> list[list[int]]:
        out = []
        for context in contexts:  # one at a time: no padding to tell the model about
            ids = torch.tensor([context], device=self.device)
            tokens = self.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                         do_sample=False, pad_token_id=self.tokenizer.pad_token_id or 0, eos_token_id=None)
            out.append(tokens[0, len(context):].tolist())
        return out


# --- torchvision and timm ---------------------------------------------------------------------
class ImageEncoder(Foreign):
    """An image network without its classifier, on images normalised with the data's mean and std."""

    def __init__(self, spec: str, net: nn.Module, mean, std):
        super().__init__(spec, "image")
        self.net = net.eval()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32)[:, None, None])
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32)[:, None, None])

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.net((images.float() - self.mean) / self.std).flatten(1)  # (B, D)


def read_weights(path: str) -> dict[str, torch.Tensor]:
    """A state dict from a .safetensors file or a torch file (read with weights_only: no code runs)."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"weights={path} does not exist; give the file of the encoder's weights (.safetensors, .pth or .pt)")
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(file)
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # a corrupt or foreign file: one line
        said = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]  # EOFError of an empty file: no message
        raise UserError(f"weights={path} cannot be read as weights: {said}") from None
    for key in ("state_dict", "model", "module"):  # common wrappers of a state dict
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"weights={path} holds no state dict of tensors")
    return {re.sub(r"^(module\.|backbone\.net\.|backbone\.)", "", k): v for k, v in state.items()}


def load_strictly(net: nn.Module, state: dict[str, torch.Tensor], spec: str, path: str) -> None:
    """All of net's weights from state, or one line naming the first key that does not match."""
    mine = net.state_dict()
    missing = [k for k in mine if k not in state]
    unexpected = [k for k in state if k not in mine]
    wrong = [k for k in mine if k in state and state[k].shape != mine[k].shape]
    if missing or unexpected or wrong:
        key = (wrong or missing or unexpected)[0]
        what = (f"has shape {tuple(state[key].shape)}, the model wants {tuple(mine[key].shape)}" if wrong else
                "is missing from the file" if missing else "is not in the model")
        raise UserError(f"weights={path} do not fit encoder={spec}: '{key}' {what} ({len(missing)} missing, "
                        f"{len(unexpected)} unexpected, {len(wrong)} of another shape)")
    net.load_state_dict(state, strict=True)


def check_image_net(kind: str, name: str) -> None:
    """torchvision or timm knows the network `name`."""
    if kind == "torchvision":
        import torchvision

        if name not in torchvision.models.list_models():
            raise UserError(f"torchvision has no model '{name}'; e.g. encoder=torchvision:resnet18")
    elif not __import__("timm").is_model(name):
        raise UserError(f"timm has no model '{name}'; e.g. encoder=timm:resnet18 (timm.list_models() names them)")


def image_net(kind: str, name: str, weights: str | None, random_init: bool, seed: int) -> nn.Module:
    """torchvision's or timm's network `name` without its classifier, with the weights of the file
    (a 3x3 first convolution in the file: the CIFAR stem, rebuilt as ours), or random ones."""
    torch.manual_seed(seed)
    check_image_net(kind, name)
    if kind == "torchvision":
        import torchvision

        net = torchvision.models.get_model(name, weights=None)
    else:
        import timm

        net = timm.create_model(name, pretrained=False)
    state = read_weights(weights) if weights else {}
    if hasattr(net, "conv1") and state.get("conv1.weight", torch.empty(0)).shape[-2:] == (3, 3):
        net.conv1, net.maxpool = nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.Identity()
    if kind == "timm":
        head = net.pretrained_cfg.get("classifier", "fc")
        net.reset_classifier(0)
    else:
        head = next(h for h in ("fc", "classifier", "heads") if hasattr(net, h))
        setattr(net, head, nn.Identity())
    if weights and not random_init:
        load_strictly(net, {k: v for k, v in state.items() if not k.startswith(f"{head}.")}, f"{kind}:{name}", weights)
    return net


def check_encoder(spec: str, weights: str | None, modality: str, data_name: str) -> tuple[str, str]:
    """(kind, name) of an encoder that can read the data's modality, refused in one line before any data is built."""
    kind, name = parse_encoder(spec)
    if kind == "hf":
        hf_folder(name)
        if weights is not None:  # a Hugging Face folder holds its weights
            raise UserError(f"weights={weights} is read for encoder=torchvision:NAME or timm:NAME only; encoder=hf:DIR loads "
                            "the weights in its folder: drop weights=")
        if modality not in ("text", "speech"):
            raise UserError(f"encoder=hf:... reads text or speech; data '{data_name}' is {modality}: use "
                            "encoder=torchvision:NAME or timm:NAME for images")
    elif modality != "image":
        raise UserError(f"encoder={kind}:... is an image network; data '{data_name}' is {modality}")
    elif weights is None:
        raise UserError(f"encoder={spec} needs its weights: weights=FILE (.safetensors or .pth; nothing is downloaded)")
    else:  # the network and its weights file, before the data is read
        check_image_net(kind, name)
        read_weights(weights)
    return kind, name


def foreign_encoder(spec: str, weights: str | None, datamodule, data_cfg, random_init: bool = False, seed: int = 0) -> Foreign:
    """The encoder `spec` names, for the data the (set up) datamodule reads, its modality deciding how."""
    kind, name = check_encoder(spec, weights, datamodule.modality, data_cfg.name)
    if kind == "hf" and datamodule.modality == "text":
        return HFText(spec, hf_folder(name), datamodule.tokenizer, random_init, seed)
    if kind == "hf":
        return HFSpeech(spec, hf_folder(name), int(data_cfg.sample_rate), random_init, seed)
    return ImageEncoder(spec, image_net(kind, name, weights, random_init, seed), list(data_cfg.mean), list(data_cfg.std))
