"""Using trained text models: GPT writes (`generate_text`), BERT fills in [MASK] (`fill_masks`). The
`generate`, `fill` and `serve` commands, GPT's training sample and the notebooks all go through these
functions."""

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from ssl_zoo.data.tokenizer import MASK_ID
from ssl_zoo.errors import BadValue, check_range
from ssl_zoo.nn.transformer import StaticCache, compiled_next_logits, generate, sample_next

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
        check_range("seed", self.seed, 0, 2**64 - 1, whole=True)  # what torch.Generator takes


def prompt_ids(method, prompt: str) -> list[int]:
    """The prompt as the model reads it: its last block_size tokens. Encoding checks it: an empty prompt
    starts a new line; a character vocabulary refuses characters it never saw."""
    tokenizer = method.tokenizer
    return tokenizer.encode(prompt or "\n", strict=tokenizer.kind == "char")[-method.backbone.cfg.block_size:]


def generate_text(method, prompt: str, settings: SamplingSettings, compile: bool = False) -> Iterator[str]:
    """Continue `prompt`, yielding the new text piece by piece as tokens are chosen (KV-cached; compile:
    the decoding steps through torch.compile, see transformer.generate). The prompt is checked here, at
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


@dataclass
class Stream:
    """One generation in a ContinuousBatcher: its tokens so far and how each new one is sampled;
    `deliver` gets each new token, then None at the end."""

    ids: list[int]  # the prompt, then the new tokens
    settings: SamplingSettings
    generator: torch.Generator
    deliver: Callable[[int | None], None]
    made: int = 0  # new tokens so far
    slot: int | None = None  # its row of the batch's cache
    cancelled: bool = False  # set from elsewhere (the client left): it leaves at the next step


class ContinuousBatcher:
    """Continuous batching for a server: the live streams' next tokens come from one forward pass over
    their rows of a static cache (`slots` rows); streams join (their prompt read into a free row) and
    leave between steps. Each stream samples with its own settings and generator, so its text is the
    text generate_text writes alone. Whoever owns it calls submit() and step() from one thread (the
    server's engine, commands/engine.py; tests)."""

    def __init__(self, method, slots: int):
        self.model, self.slots, self.device = method.backbone, slots, method.device
        self.cache = StaticCache(slots, self.model.cfg.block_size, self.device)
        self.waiting: deque[Stream] = deque()
        self.joining: list[Stream] = []  # taken from waiting by a step, not yet live (a failing step ends them too)
        self.live: list[Stream] = []

    @property
    def busy(self) -> bool:
        return bool(self.waiting or self.live)

    def submit(self, ids: list[int], settings: SamplingSettings, deliver) -> Stream:
        stream = Stream(list(ids), settings, torch.Generator(device=self.device).manual_seed(settings.seed), deliver)
        self.waiting.append(stream)
        return stream

    def end_all(self) -> None:
        """Every stream ends now (after a step failed): each gets its None."""
        ended = {id(s): s for s in [*self.live, *self.joining, *self.waiting]}.values()
        self.live, self.joining = [], []
        self.waiting.clear()
        for stream in ended:
            stream.deliver(None)

    @torch.inference_mode()
    def step(self) -> None:
        """Drop the cancelled, admit the waiting into free rows (reading their prompts), then one token
        for every live stream."""
        for stream in [s for s in self.live if s.cancelled]:
            self.leave(stream)
        free = sorted(set(range(self.slots)) - {s.slot for s in self.live})
        self.joining = joining = [self.waiting.popleft() for _ in range(min(len(free), len(self.waiting)))]
        cached, windowed = [], []
        for stream in sorted(self.live, key=lambda s: s.slot):  # their last token is not in the cache yet
            (cached if len(stream.ids) <= self.cache.capacity else windowed).append(stream)
        logits = {}
        if cached:
            last = torch.tensor([[s.ids[-1]] for s in cached], device=self.device)
            hidden = self.model(last, cache=self.cache.using([s.slot for s in cached]))[:, -1]  # (B, C): one pass for all of them
            logits.update(zip(map(id, cached), self.model.logits(hidden)))
        for stream in windowed:  # past the context: it re-reads its last block_size tokens (as generate does)
            window = torch.tensor([stream.ids[-self.cache.capacity:]], device=self.device)
            logits[id(stream)] = self.model.logits(self.model(window))[0, -1]
        for stream, slot in zip(joining, free):
            if stream.cancelled:
                stream.deliver(None)
                continue
            stream.slot = slot
            self.cache.lengths[slot] = 0  # the row's old keys are never read again, and overwritten
            prompt = torch.tensor([stream.ids], device=self.device)
            logits[id(stream)] = self.model.logits(self.model(prompt, cache=self.cache.using([slot])))[0, -1]
            self.live.append(stream)
        self.joining = []
        # sampled together: the streams with the same settings, each row with its own generator
        groups: dict[tuple, list[Stream]] = {}
        for stream in self.live:
            s = stream.settings
            groups.setdefault((s.temperature, s.top_k, s.top_p), []).append(stream)
        for (temperature, top_k, top_p), streams in groups.items():
            group_logits = torch.stack([logits[id(stream)] for stream in streams])  # (B, V)
            tokens = sample_next(group_logits, temperature, top_k, top_p, [stream.generator for stream in streams])[:, 0].tolist()
            for stream, token in zip(streams, tokens):
                stream.ids.append(token)
                stream.made += 1
                stream.deliver(token)
                if stream.made >= stream.settings.max_new_tokens:
                    self.leave(stream)

    def leave(self, stream: Stream) -> None:
        self.live.remove(stream)
        stream.deliver(None)


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
