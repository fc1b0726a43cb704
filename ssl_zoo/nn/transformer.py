"""One transformer for GPT, BERT, the speech models and the ViT: pre-LN blocks, SDPA attention (two matmuls on a
CPU in bf16 at short contexts) with a causal flag (the method sets it: `use_attention`), optional weight
tying, and a key/value cache to read and write when it decodes (nn/kv_cache.py; decoding: infer/decode.py).

Inputs are token ids (B, T) when `vocab_size` is set, or feature vectors (B, T, input_dim) (log-mel
frames) when `input_dim` is set. The model returns hidden states (B, T, n_embd); `logits()` maps them
to the vocabulary with the (tied) output layer.
"""

import math
from dataclasses import dataclass
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn

from ssl_zoo.errors import UserError, layer_problem
from ssl_zoo.nn.kv_cache import CacheWrite, StaticCache
from ssl_zoo.settings import Range


@dataclass
class TransformerConfig:
    vocab_size: int | None = None  # token inputs; None when the inputs are vectors
    input_dim: int | None = None  # vector inputs (e.g. 80 log-mel bins), projected to n_embd
    block_size: Annotated[int, Range(1, whole=True)] = 256  # longest sequence: the number of learned positions
    n_layer: Annotated[int, Range(1, whole=True)] = 6
    n_head: Annotated[int, Range(1, whole=True)] = 6
    n_embd: Annotated[int, Range(1, whole=True)] = 384
    dropout: Annotated[float, Range(0, 1, below=True)] = 0.0
    bias: bool = True  # biases in Linear and LayerNorm layers
    causal: bool | None = None  # GPT and APC: True; BERT and masked speech: False; None: the method decides
    tie_weights: bool = True  # output layer shares the token embedding (tokens only)

    def __post_init__(self):
        if (self.vocab_size is None) == (self.input_dim is None):
            raise ValueError("set exactly one of vocab_size (token inputs) and input_dim (vector inputs)")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")


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

    def forward(self, x, key_padding_mask=None, cache: tuple[CacheWrite, int] | None = None, attn_mask=None):
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

    def forward(self, x, key_padding_mask=None, cache: tuple[CacheWrite, int] | None = None, attn_mask=None,
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
    settings_class = TransformerConfig  # what Transformer(**settings) takes (settings.py reads its declarations)
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
        if cache is not None:  # each row continues from its length; attn_mask: which cached keys each query sees
            positions, write, attn_mask = cache.begin(t, positions, self.cfg.block_size)
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
        if problem := layer_problem(layer, self.cfg.n_layer, name):
            raise UserError(problem)
        return layer

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


