"""Continuous batching for a server: many generations share one forward pass a step (infer/engine.py runs it)."""

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ssl_zoo.infer.decode import sample_next
from ssl_zoo.infer.text import SamplingSettings
from ssl_zoo.nn.kv_cache import StaticCache


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
    server's engine, infer/engine.py; tests)."""

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
