"""Using trained text models: GPT writes (`generate_text`), BERT fills in [MASK] (`fill_masks`). The
`generate`, `fill` and `serve` commands, GPT's training sample and the notebooks all go through these
functions."""

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ssl_zoo.data.tokenizer import MASK_ID
from ssl_zoo.errors import BadValue, check_range
from ssl_zoo.nn.transformer import generate

@dataclass
class SamplingSettings:
    max_new_tokens: int = 200
    temperature: float = 0.8  # 0: greedy
    top_k: int | None = 50
    top_p: float | None = None
    seed: int = 0

    def check(self, max_new_tokens_limit: int | None = None) -> None:
        check_range("max_new_tokens", self.max_new_tokens, 1, max_new_tokens_limit, whole=True)
        check_range("temperature", self.temperature, 0.0, 100.0)
        check_range("top_k", self.top_k, 1, allow_none=True)
        check_range("top_p", self.top_p, 1e-6, 1.0, allow_none=True)
        check_range("seed", self.seed, 0)


def generate_text(method, prompt: str, settings: SamplingSettings) -> Iterator[str]:
    """Continue `prompt`, yielding the new text piece by piece as tokens are chosen (KV-cached).
    The prompt is checked here, at the call, so that a bad one fails before any text is streamed."""
    tokenizer = method.tokenizer
    # an empty prompt starts a new line; a character vocabulary refuses characters it never saw
    ids = torch.tensor([tokenizer.encode(prompt or "\n", strict=tokenizer.kind == "char")], device=method.device)
    block = method.backbone.cfg.block_size
    return _continuation(method, ids[:, -block:], settings)  # the model sees at most block_size tokens


def _continuation(method, ids: torch.Tensor, settings: SamplingSettings) -> Iterator[str]:
    tokenizer = method.tokenizer
    generator = torch.Generator(device=method.device).manual_seed(settings.seed)
    new, shown = [], ""
    for token in generate(method.backbone, ids, settings.max_new_tokens, settings.temperature, settings.top_k,
                          settings.top_p, generator):
        new.append(token.item())
        text = tokenizer.decode(new)
        stable = text.rstrip("\ufffd")  # a byte-level token may end inside a character: wait for the rest
        if len(stable) > len(shown) and stable.startswith(shown):
            yield stable[len(shown):]
            shown = stable
    text = tokenizer.decode(new)
    if text != shown and text.startswith(shown):
        yield text[len(shown):]


@torch.no_grad()
def fill_masks(method, text: str, top_k: int = 5) -> list[list[tuple[str, float]]]:
    """For each [MASK] in text, in order: the top_k (token, probability) candidates, most likely first."""
    tokenizer = method.tokenizer
    check_range("top_k", top_k, 1)
    ids = tokenizer.encode(text, strict=tokenizer.kind == "char")
    positions = [i for i, t in enumerate(ids) if t == MASK_ID]
    if not positions:
        raise BadValue("text", 'the text has no [MASK]; write [MASK] where a token should be filled in, e.g. text="def [MASK](self):"')
    block = method.backbone.cfg.block_size
    if len(ids) > block:
        raise BadValue("text", f"the text is {len(ids)} tokens long; this model reads at most {block}: shorten it")
    inputs = torch.tensor([ids], device=method.device)
    probs = method.backbone.logits(method.backbone(inputs))[0, positions].float().softmax(-1)  # (masks, V)
    top = probs.topk(min(top_k, probs.shape[-1]), dim=-1)
    return [
        [(tokenizer.token_text(i), p) for p, i in zip(values.tolist(), indices.tolist())]
        for values, indices in zip(top.values, top.indices)
    ]
