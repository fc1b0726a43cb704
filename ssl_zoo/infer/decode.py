"""Decoding: a transformer continues token ids. sample_next (temperature, top-k, top-p; each row from its own
generator), generate (KV-cached, prompts of different lengths together), and the compiled one-token step
(torch.compile with freezing, kept to one model's current weights)."""

import functools
import logging
import weakref

import torch

from ssl_zoo.errors import UserError
from ssl_zoo.nn.kv_cache import StaticCache
from ssl_zoo.nn.transformer import Transformer


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                generator: torch.Generator | list[torch.Generator | None] | None = None) -> torch.Tensor:
    """One token per row of logits (B, V): greedy at temperature 0, else sampled from the top-k /
    nucleus (top-p) filtered distribution, (B, 1). generator: one for the batch, or one per row; each
    row's token is its cumulative distribution at one uniform draw from its own generator, so a seeded
    stream gets the same tokens alone and batched with others (the row-wise ops here compute a row
    the same in any batch). Logits of bf16 weights are sampled in fp32."""
    logits = logits.float()
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop = cumulative - sorted_logits.softmax(dim=-1) > top_p  # keep the smallest set reaching top_p
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    cdf = logits.softmax(dim=-1).cumsum(dim=-1)  # (B, V)
    if isinstance(generator, list):
        uniform = torch.cat([torch.rand(1, generator=g, device=logits.device) for g in generator])
    else:
        uniform = torch.rand(len(logits), generator=generator, device=logits.device)
    # the first token whose cumulative probability passes the draw (right=True: never a token of probability 0)
    return torch.searchsorted(cdf, (uniform * cdf[:, -1])[:, None], right=True).clamp_max(logits.shape[-1] - 1)


@torch.inference_mode()  # no autograd bookkeeping at all: 11% quicker than no_grad at batch 1 (baby GPT, bf16)
def generate(model: Transformer, prompts: torch.Tensor | list[list[int]], max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None,
             generator: torch.Generator | list[torch.Generator | None] | None = None, use_cache: bool = True,
             compile: bool = False):
    """Continue each prompt by max_new_tokens tokens, yielding each step's new tokens (B, 1) as chosen.

    prompts: ids (B, T), or a list of B token lists of different lengths (decoded together: each row
    has its own positions in the static cache). generator: one for the batch, or one per row.
    With the cache each prompt is read once and each later step feeds one token per row. A row longer
    than block_size re-reads its last block_size tokens at every step (as without the cache).
    compile: the one-token steps go through torch.compile (`compiled_for`) over a cache of fixed shapes
    (block_size positions): compiled at the first call of a model and batch size (10-30 s on 2 cores,
    in every process: inductor cannot cache frozen graphs on disk), then 2-2.7x quicker a token
    (docs/benchmarks.md); worth it for long or repeated generation with one model.
    """
    rows = [list(p) for p in prompts.tolist()] if torch.is_tensor(prompts) else [list(p) for p in prompts]
    device = next(model.parameters()).device
    block = model.cfg.block_size
    capacity = block if compile else min(block, max(map(len, rows)) + max_new_tokens)  # compiled: one shape for all calls
    cache = None
    if use_cache and max(map(len, rows)) <= block:
        cache = StaticCache(len(rows), capacity, device, fixed_shapes=compile)
    step = compiled_for(model) if compile and cache is not None else next_logits
    fresh = None  # the tokens the cache has not read yet: (B, 1)
    for _ in range(max_new_tokens):
        if cache is not None and fresh is None:  # the prompts, right-padded; each row then continues at its length
            ids, lengths = padded(rows, device)
            hidden = model(ids, cache=cache)
            cache.set_lengths(lengths)
            logits = model.logits(hidden[torch.arange(len(rows), device=device), lengths - 1])  # (B, V)
        elif cache is not None and int(cache.lengths.max()) < capacity:
            logits = step(model, fresh, cache)
        else:  # past the context: every row re-reads its last block_size tokens
            cache = None
            ids, lengths = padded([r[-block:] for r in rows], device)
            hidden = model(ids)
            logits = model.logits(hidden[torch.arange(len(rows), device=device), lengths - 1])
        fresh = sample_next(logits, temperature, top_k, top_p, generator)
        for row, token in zip(rows, fresh[:, 0].tolist()):
            row.append(token)
        yield fresh


def next_logits(model: Transformer, tokens: torch.Tensor, cache: StaticCache) -> torch.Tensor:
    """One decoding step: each row's new token (B, 1) read into the cache; the next-token logits (B, V)."""
    return model.logits(model(tokens, cache=cache)[:, -1])


# inductor's settings for the compiled decoding step on a CPU (compiled_next_logits says why each)
CPU_COMPILE_OPTIONS = dict(freezing=True, cpp_wrapper=True, max_autotune=True, max_autotune_gemm_backends="CPP,ATEN",
                           autotune_num_choices_displayed=0, max_autotune_report_choices_stats=False)  # prints nothing


@functools.cache
def compiled_next_logits(device_type: str):
    """next_logits through torch.compile, for generate(compile=True)'s one-token steps. On a CPU
    what makes a step quick (baby GPT, 8 rows, AMX: eager 3.6 ms, compiled 2.1, these options 1.4):
    freezing (the weights become constants), inductor's own C++ GEMMs chosen by autotuning against
    oneDNN's (max_autotune: few rows, so a call's overhead matters; it adds seconds to the compile),
    and the C++ wrapper (no Python between kernels); all need a C++ compiler. One compiled graph per
    batch size (dynamo's guards); compiled_for() keeps them to one model's current weights."""
    options = {"freezing": True}
    if device_type == "cpu":
        from torch._inductor.cpp_builder import get_cpp_compiler
        from torch._inductor.exc import InvalidCxxCompiler

        try:
            get_cpp_compiler()  # $CXX, else g++: where inductor looks
        except InvalidCxxCompiler:
            raise UserError("compile=true needs a working C++ compiler for torch.compile on a CPU ($CXX, else g++): "
                            "install g++ or set CXX to one, or leave compile=false") from None
        options = dict(CPU_COMPILE_OPTIONS)
        # torch's CUDA build, compiling C++ for the CPU, warns that it found no CUDA runtime: not news here
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    step = torch.compile(next_logits, dynamic=False, options=options)

    def compiled(model: Transformer, tokens: torch.Tensor, cache: StaticCache) -> torch.Tensor:
        # dynamo reads inductor's global freezing flag when it traces (the weights become constants only
        # with it on then): set around each call (15 us; patching all the options costs ~1 ms)
        with torch._inductor.config.patch(freezing=True):
            return step(model, tokens, cache)

    compiled.model, compiled.weights = None, None  # what its graphs were compiled from (compiled_for)
    return compiled


def compiled_for(model: Transformer):
    """compiled_next_logits for this model. Freezing made the weights constants of the graphs, so
    graphs compiled from another model, or from this one before its weights changed (in place, or
    moved), are dropped first: they would compute with the old weights. (Their weights stay in memory
    all the same: torch keeps them, docs/benchmarks.md.)"""
    step = compiled_next_logits(next(model.parameters()).device.type)
    weights = [(p.data_ptr(), p.dtype, p._version) for p in model.parameters()]
    if step.model is None or step.model() is not model or step.weights != weights:
        torch._dynamo.eval_frame.remove_from_cache(next_logits)  # this function's graphs only
        step.model, step.weights = weakref.ref(model), weights
    return step


def padded(rows: list[list[int]], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists as one right-padded batch (B, T_max) (the padding after each row's tokens is never
    seen by them: causal attention), and their lengths (B,)."""
    lengths = torch.tensor([len(r) for r in rows], device=device)
    ids = torch.zeros(len(rows), int(lengths.max()), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    return ids.to(device), lengths
