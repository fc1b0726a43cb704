"""Text from trained text models: a GPT writes (`generate_text`, streamed piece by piece), a BERT fills in
[MASK] (`fill_masks`). The `generate`, `fill` and `serve` commands, GPT's training sample, the API and
the notebooks all go through these functions."""

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Annotated

import torch

from ssl_zoo import settings as declared
from ssl_zoo.data.tokenizer import MASK_ID
from ssl_zoo.errors import BadValue, check_range
from ssl_zoo.infer.decode import compiled_next_logits, generate
from ssl_zoo.settings import Range

MAX_NEW_TOKENS = 100_000  # one request's bound: a typo of a few zeros would otherwise decode for hours (serve caps lower)


@dataclass
class SamplingSettings:
    max_new_tokens: Annotated[int, Range(1, MAX_NEW_TOKENS, whole=True)] = 200
    temperature: Annotated[float, Range(0.0, 100.0)] = 0.8  # 0: greedy
    top_k: Annotated[int | None, Range(1, whole=True, nullable=True)] = 50
    top_p: Annotated[float | None, Range(1e-6, 1.0, nullable=True)] = None
    seed: Annotated[int, Range(0, 2**64 - 1, whole=True)] = 0  # what torch.Generator takes

    def check(self, max_new_tokens_limit: int | None = None) -> None:
        """A request's settings (serve, the API; the command line's are checked at start-up), and the
        server's limit on its length."""
        declared.check("", asdict(self), SamplingSettings)
        check_range("max_new_tokens", self.max_new_tokens, 1, max_new_tokens_limit, whole=True)


def prompt_ids(method, prompt: str) -> list[int]:
    """The prompt as the model reads it: its last block_size tokens. Encoding checks it: an empty prompt
    starts a new line; a character vocabulary refuses characters it never saw."""
    tokenizer = method.tokenizer
    return tokenizer.encode(prompt or "\n", strict=tokenizer.kind == "char")[-method.backbone.cfg.block_size:]


def generate_text(method, prompt: str, settings: SamplingSettings, compile: bool = False) -> Iterator[str]:
    """Continue `prompt`, yielding the new text piece by piece as tokens are chosen (KV-cached; compile:
    the decoding steps through torch.compile, see infer/decode.generate). The prompt is checked here, at
    the call, so that a bad one fails before any text is streamed (as does compile without a C++ compiler)."""
    ids = prompt_ids(method, prompt)
    if compile:
        compiled_next_logits(method.device.type)
    return _continuation(method, ids, settings, compile)


def _continuation(method, ids: list[int], settings: SamplingSettings, compile: bool) -> Iterator[str]:
    pieces = TextPieces(method.tokenizer)
    generator = torch.Generator(device=method.device).manual_seed(settings.seed)
    for token in generate(method.backbone, [ids], settings.max_new_tokens, settings.temperature, settings.top_k,
                          settings.top_p, generator, compile=compile):
        if piece := pieces.add(token.item()):
            yield piece
    if rest := pieces.rest():
        yield rest


class TextPieces:
    """New tokens in, new text out: each token's piece of the decoded text. A byte-level token may end
    inside a character, so its piece waits for the rest of the character."""

    def __init__(self, tokenizer):
        self.tokenizer, self.ids, self.shown = tokenizer, [], ""

    def add(self, token: int) -> str:
        self.ids.append(token)
        stable = self.tokenizer.decode(self.ids).rstrip("\ufffd")
        if len(stable) > len(self.shown) and stable.startswith(self.shown):
            piece, self.shown = stable[len(self.shown):], stable
            return piece
        return ""

    def rest(self) -> str:
        """What is left at the end (e.g. an incomplete character's replacement mark)."""
        text = self.tokenizer.decode(self.ids)
        return text[len(self.shown):] if text != self.shown and text.startswith(self.shown) else ""



@torch.no_grad()
def fill_masks(method, text: str, top_k: int = 5) -> list[list[tuple[str, float]]]:
    """For each [MASK] in text, in order: the top_k (token, probability) candidates, most likely first."""
    tokenizer = method.tokenizer
    check_range("top_k", top_k, 1, method.backbone.cfg.vocab_size, whole=True)  # at most every token of the vocabulary
    ids = tokenizer.encode(text, strict=tokenizer.kind == "char")
    positions = [i for i, t in enumerate(ids) if t == MASK_ID]
    if not positions:
        raise BadValue("text", 'the text has no [MASK]; write [MASK] where a token should be filled in, e.g. text="def [MASK](self):"')
    block = method.backbone.cfg.block_size
    if len(ids) > block:
        raise BadValue("text", f"the text is {len(ids)} tokens long; this model reads at most {block}: shorten it")
    inputs = torch.tensor([ids], device=method.device)
    probs = method.backbone.logits(method.backbone(inputs))[0, positions].float().softmax(-1)  # (masks, V)
    top = probs.topk(top_k, dim=-1)
    return [
        [(tokenizer.token_text(i), p) for p, i in zip(values.tolist(), indices.tolist())]
        for values, indices in zip(top.values, top.indices)
    ]


def top_1(text: str, candidates: list[list[tuple[str, float]]]) -> str:
    """The text with each [MASK] replaced by its most likely candidate."""
    for options in candidates:
        text = text.replace("[MASK]", options[0][0], 1)
    return text
