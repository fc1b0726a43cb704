"""One transformer for GPT, BERT and the speech models: pre-LN blocks, SDPA attention (two matmuls on a CPU in bf16 at short contexts) with a causal
flag (the method sets it: `use_attention`), a key/value cache for generation, and optional weight tying.

Inputs are token ids (B, T) when `vocab_size` is set, or feature vectors (B, T, input_dim) (log-mel
frames) when `input_dim` is set. The model returns hidden states (B, T, n_embd); `logits()` maps them
to the vocabulary with the (tied) output layer.
"""

import functools
import logging
import math
import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ssl_zoo.errors import UserError


@dataclass
class TransformerConfig:
    vocab_size: int | None = None  # token inputs; None when the inputs are vectors
    input_dim: int | None = None  # vector inputs (e.g. 80 log-mel bins), projected to n_embd
    block_size: int = 256  # longest sequence: the number of learned positions
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 384
    dropout: float = 0.0
    bias: bool = True  # biases in Linear and LayerNorm layers
    causal: bool | None = None  # GPT and APC: True; BERT and masked speech: False; None: the method decides
    tie_weights: bool = True  # output layer shares the token embedding (tokens only)

    def __post_init__(self):
        if (self.vocab_size is None) == (self.input_dim is None):
            raise ValueError("set exactly one of vocab_size (token inputs) and input_dim (vector inputs)")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")


class StaticCache:
    """The keys and values of every layer for generation, preallocated (B, n_head, capacity, head_dim) and
    written in place; `lengths` (B,) counts the positions each row holds, so the rows of a batch may be
    at different positions (prompts of different lengths decode together). Row b's next token goes to
    position lengths[b] and sees keys 0..lengths[b]: slots beyond a row's length (its padding) are never
    read, and are overwritten as the row grows. On a CPU they are kept in fp32 whatever the weights'
    dtype: SDPA reads fp32 keys 2-4x quicker than bf16 ones there (docs/benchmarks.md).

    fixed_shapes: every forward attends over the whole capacity (masked past each row's position) and
    writes by index, and the keys keep the weights' dtype: no shape and no branch depends on the
    lengths, so that torch.compile compiles one decoding step for all of them (`generate(compile=True)`;
    compiled, bf16 keys are the quicker ones). The caller keeps the lengths within the capacity."""

    def __init__(self, batch: int, capacity: int, device=None, fixed_shapes: bool = False):
        self.capacity, self.fixed_shapes = capacity, fixed_shapes
        self.lengths = torch.zeros(batch, dtype=torch.long, device=device)
        self.keys: dict[int, torch.Tensor] = {}  # per layer, allocated at its first write
        self.values: dict[int, torch.Tensor] = {}
        self.rows: torch.Tensor | None = None  # the rows the next forward reads and writes (None: all, in order)
        self.block: slice | None = slice(None)  # the same rows as a slice, when they are consecutive

    def using(self, rows: list[int] | None) -> "StaticCache":
        """The next forwards go to these rows only (slots of a server's batch: streams join and leave).
        Consecutive rows (ascending) are read as a view; others are gathered (a copy) at every layer."""
        self.rows, self.block = None, slice(None)
        if rows is not None:
            self.rows = torch.tensor(rows, device=self.lengths.device)
            consecutive = rows == list(range(rows[0], rows[0] + len(rows)))
            self.block = slice(rows[0], rows[0] + len(rows)) if consecutive else None
        return self

    def row_lengths(self) -> torch.Tensor:
        return self.lengths[self.block] if self.block is not None else self.lengths[self.rows]

    def set_lengths(self, lengths: torch.Tensor) -> None:
        if self.rows is None and self.fixed_shapes:
            self.lengths.copy_(lengths)  # in place: a compiled step mutates its input, with no attribute to replay
        elif self.rows is None:
            self.lengths = lengths
        else:
            self.lengths[self.block if self.block is not None else self.rows] = lengths

    def writer(self, positions: torch.Tensor) -> "CacheWrite":
        """Where one forward's new keys go, worked out once for all layers. positions: (B, T)."""
        b, t = positions.shape
        rows = torch.arange(b, device=positions.device) if self.block is not None else self.rows
        if self.fixed_shapes:  # no host sync: the whole capacity is read, the new keys written by index
            return CacheWrite(self, positions, self.capacity, None, rows[:, None])
        start = None  # set when every row writes the same positions start..start+T-1: a slice, no index
        if self.block is not None and bool((positions == positions[:1, :1] + torch.arange(t, device=positions.device)).all()):
            start = int(positions[0, 0])
        return CacheWrite(self, positions, int(positions.max()) + 1, start, rows[:, None])


@dataclass
class CacheWrite:
    cache: StaticCache
    positions: torch.Tensor  # (B, T) where the new keys go
    end: int  # 1 + the last position written in any row: the keys attention reads
    start: int | None  # set when all rows write the same positions start..start+T-1
    rows: torch.Tensor  # (B, 1) the rows written: of the cache's block when it has one, else of the cache

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the layer's new keys and values (B, nh, T, hs) at their rows' positions; return the keys
        and values of positions 0..end-1 (B, nh, end, hs)."""
        out, block = [], self.cache.block
        for store, new in ((self.cache.keys, k), (self.cache.values, v)):
            if layer not in store:
                dtype = torch.float32 if new.device.type == "cpu" and not self.cache.fixed_shapes else new.dtype
                store[layer] = new.new_zeros(len(self.cache.lengths), new.shape[1], self.cache.capacity, new.shape[3], dtype=dtype)
            tensor = store[layer] if block is None else store[layer][block]  # a view of the rows, when consecutive
            if self.start is not None:
                tensor[:, :, self.start: self.start + new.shape[2]] = new
            else:
                tensor[self.rows, :, self.positions] = new.transpose(1, 2).to(tensor.dtype)  # (B, T, nh, hs) in place
            out.append(tensor[:, :, : self.end] if block is not None else tensor[self.rows[:, 0], :, : self.end])
        return out[0], out[1]


# On a CPU in bf16, SDPA's fused kernel is slower than two matmuls and a softmax up to a few hundred keys
# (1.35-2.7x at 128-384 keys in training; 1.8-3.6x for 8 rows of one query) and level at 1,024: measured,
# docs/benchmarks.md "Attention on the CPU in bf16" (bench/attention_cpu.py). fp32 and GPUs keep SDPA, and
# so does decoding on a CPU, which attends over the fp32 cache (StaticCache).
EXPLICIT_MAX_KEYS = 384


def attention(q, k, v, mask: torch.Tensor | None = None, is_causal: bool = False, dropout_p: float = 0.0) -> torch.Tensor:
    """softmax(q k^T / sqrt(hs)) v for q (B, nh, T, hs) and k, v (B, nh, T_keys, hs); mask: bool,
    broadcastable to (B, nh, T, T_keys), True = may attend. SDPA's semantics, a query that may attend to
    nothing included (zeros), whichever kernel computes it."""
    single_query = q.shape[0] * q.shape[2] == 1  # batch-1 decoding: SDPA's kernel is as quick or quicker (31 against 95 us at 64 keys)
    if q.device.type != "cpu" or q.dtype != torch.bfloat16 or k.shape[2] > EXPLICIT_MAX_KEYS or single_query:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=is_causal)
    scale = q.shape[-1] ** -0.5
    if is_causal:  # the mask as a bias added inside the matmul: (T, T), -inf above the diagonal
        bias = torch.full((q.shape[2], k.shape[2]), float("-inf"), dtype=q.dtype, device=q.device).triu(1)
        scores = torch.baddbmm(bias, q.flatten(0, 1), k.flatten(0, 1).transpose(1, 2), alpha=scale).view(*q.shape[:3], -1)
    else:
        scores = (q @ k.transpose(-2, -1)) * scale  # (B, nh, T, T_keys)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(-1)  # (the CPU kernel sums bf16 in fp32)
    if mask is not None:  # a row with no key to see: NaN from softmax, zeros from SDPA
        weights = weights.nan_to_num(0.0)
    return F.dropout(weights, dropout_p, training=dropout_p > 0) @ v


class SelfAttention(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg, self.n_head, self.dropout = cfg, cfg.n_head, cfg.dropout  # cfg.causal is read at each call
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x, key_padding_mask=None, cache: tuple["CacheWrite", int] | None = None, attn_mask=None):
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))  # (B, nh, T, hs)
        if cache is not None:  # generation: attn_mask says which cached positions each query sees
            write, layer = cache
            k, v = write.update(layer, k, v)  # (B, nh, end, hs)
            q = q.to(k.dtype)  # bf16 weights on a CPU: attention over the fp32 cache
        mask, is_causal = None, False
        if self.cfg.causal and t > 1 and cache is None:
            if key_padding_mask is None and attn_mask is None:
                is_causal = True  # the fast path
            else:
                mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        if key_padding_mask is not None:  # (B, T_keys), True = a real token
            pad = key_padding_mask[:, None, None, :]
            mask = pad if mask is None else mask & pad
        if attn_mask is not None:  # (B, T, T_keys), True = query i may see key j (AIM's prefix-causal mask)
            mask = attn_mask[:, None] if mask is None else mask & attn_mask[:, None]
        y = attention(q, k, v, mask, is_causal, self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(b, t, c)  # re-assemble the heads side by side
        if cache is not None:
            y = y.to(x.dtype)  # from the fp32 cache's attention back to the weights' dtype
        return self.resid_dropout(self.proj(y))


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = SelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias),
            nn.GELU(),
            nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, x, key_padding_mask=None, cache: tuple["CacheWrite", int] | None = None, attn_mask=None,
                ffn_outputs: list | None = None):
        """ffn_outputs: a list that the feed-forward layer's output (B, T, C), before the residual is
        added, is appended to (data2vec's targets)."""
        x = x + self.attn(self.ln_1(x), key_padding_mask, cache, attn_mask)
        ffn = self.mlp(self.ln_2(x))
        if ffn_outputs is not None:
            ffn_outputs.append(ffn)
        return x + ffn


class Transformer(nn.Module):
    reads = ("text", "speech")  # token ids or feature vectors (build.check_modalities); images through nn/vit.py
    def __init__(self, cfg: TransformerConfig | None = None, **settings):
        """Transformer(TransformerConfig(...)) or Transformer(n_layer=4, ...) (as Hydra builds it)."""
        super().__init__()
        cfg = cfg or TransformerConfig(**settings)
        self.cfg = cfg
        self.out_dim = cfg.n_embd
        if cfg.vocab_size is not None:
            self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        else:
            self.in_proj = nn.Linear(cfg.input_dim, cfg.n_embd)
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        if cfg.vocab_size is not None:
            self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
            if cfg.tie_weights:
                self.lm_head.weight = self.tok_emb.weight
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale the residual projections by depth
            if name.endswith(("attn.proj.weight", "mlp.2.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def use_attention(self, causal: bool, method: str) -> None:
        """Set the attention a method trains with; a model config that asks for the other is refused."""
        if self.cfg.causal is not None and self.cfg.causal != causal:
            want = "causal" if causal else "bidirectional"
            raise UserError(f"{method} needs {want} attention, but model.causal={str(self.cfg.causal).lower()}; drop model.causal "
                            "(the method sets it)")
        self.cfg.causal = causal

    def forward(self, inputs, key_padding_mask=None, cache: StaticCache | None = None, all_layers: bool = False,
                positions: torch.Tensor | None = None, attn_mask: torch.Tensor | None = None, ffn_outputs: bool = False):
        """inputs: ids (B, T) or vectors (B, T, input_dim); key_padding_mask: (B, T), True = real;
        positions: (B, T) the position of each input (default 0..T-1, or each row's next positions in
        the cache; MAE's visible patches keep their own); attn_mask: (B, T, T) True where query i may
        attend to key j; cache: a StaticCache (causal models) that the new keys and values are written
        into, each row continuing from its own length.

        Returns the final hidden states (B, T, n_embd), or with all_layers the list of every layer's
        output (embeddings first, final LayerNorm applied to the last), or with ffn_outputs the list of
        every block's feed-forward output before its residual is added (n_layer of (B, T, n_embd):
        data2vec's targets, free of the embeddings that the residual stream carries through).
        """
        if self.cfg.causal is None:
            raise ValueError("the attention is not set: build with causal=True/False, or let a method set it (use_attention)")
        t = inputs.shape[1]
        write = None
        if cache is not None:
            if positions is None:
                positions = cache.row_lengths()[:, None] + torch.arange(t, device=inputs.device)  # (B, T)
            write = cache.writer(positions)
            if not cache.fixed_shapes and write.end > min(cache.capacity, self.cfg.block_size):
                raise ValueError(f"sequence of {write.end} exceeds the cache ({cache.capacity}) or block_size {self.cfg.block_size}")
            # query at position p sees the keys at positions 0..p of its own row: (B, T, end)
            attn_mask = torch.arange(write.end, device=inputs.device) <= positions[:, :, None]
            if t == 1 and not cache.fixed_shapes and bool(attn_mask.all()):  # every row sees every key: no mask to apply
                attn_mask = None
        elif t > self.cfg.block_size:
            raise ValueError(f"sequence of {t} exceeds block_size {self.cfg.block_size}")
        if positions is None:
            positions = torch.arange(t, device=inputs.device)
        x = self.tok_emb(inputs) if self.cfg.vocab_size is not None else self.in_proj(inputs)
        x = self.drop(x + self.pos_emb(positions))  # (B, T, C)
        layers, ffns = [x], [] if ffn_outputs else None
        for i, block in enumerate(self.blocks):
            x = block(x, key_padding_mask, (write, i) if write else None, attn_mask, ffns)
            layers.append(x)
        if cache is not None:
            cache.set_lengths(positions[:, -1] + 1)
        if ffn_outputs:
            return ffns
        x = self.ln_f(x)
        layers[-1] = x
        return layers if all_layers else x

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(hidden)  # (B, T, vocab)

    def check_layer(self, layer: int | str, name: str = "probe_layer") -> int | str:
        """A valid index into forward(all_layers=True)'s list: 0 (embeddings) .. n_layer, or -1 .. -(n_layer + 1);
        or "weighted": every layer, for a learned softmax-weighted sum (SUPERB)."""
        n = self.cfg.n_layer
        if layer == "weighted" or (isinstance(layer, int) and -(n + 1) <= layer <= n):
            return layer
        raise UserError(f"{name}={layer} is out of range: this model has layers 0 (embeddings) to {n}, or -1 to -{n + 1}, "
                        "or 'weighted' (all of them)")

    def pooled(self, inputs, key_padding_mask=None, layer: int | str = -1) -> torch.Tensor:
        """Features for the probe: one layer's hidden states averaged over the real positions, (B, C);
        with layer="weighted", every layer's, (B, n_layer + 1, C) (pooling and a weighted sum commute)."""
        layers = self(inputs, key_padding_mask, all_layers=True)
        if layer == "weighted":
            return torch.stack([mean_pool(hidden, key_padding_mask) for hidden in layers], dim=1)
        return mean_pool(layers[layer], key_padding_mask)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Average of the hidden states (B, T, C) over the real positions (mask (B, T), True = real): (B, C)."""
    if mask is None:
        return hidden.mean(1)
    weights = mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)


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
