"""One transformer for GPT, BERT and the speech models: pre-LN blocks, SDPA attention with a causal
flag (the method sets it: `use_attention`), a key/value cache for generation, and optional weight tying.

Inputs are token ids (B, T) when `vocab_size` is set, or feature vectors (B, T, input_dim) (log-mel
frames) when `input_dim` is set. The model returns hidden states (B, T, n_embd); `logits()` maps them
to the vocabulary with the (tied) output layer.
"""

import math
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


# A cache is one (keys, values) pair per layer, each (B, n_head, T_past, head_dim).
KVCache = list[tuple[torch.Tensor, torch.Tensor]]


class SelfAttention(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg, self.n_head, self.dropout = cfg, cfg.n_head, cfg.dropout  # cfg.causal is read at each call
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x, key_padding_mask=None, past=None, attn_mask=None):
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))  # (B, nh, T, hs)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)  # (B, nh, T_past + T, hs)
        present = (k, v)
        mask, is_causal = None, False
        if self.cfg.causal and t > 1:
            p = k.shape[2] - t  # positions already in the cache
            if p == 0 and key_padding_mask is None:
                is_causal = True  # the fast path
            else:  # query i (absolute position p + i) sees keys 0..p+i
                mask = torch.ones(t, p + t, dtype=torch.bool, device=x.device).tril(diagonal=p)
        if key_padding_mask is not None:  # (B, T_keys), True = a real token
            pad = key_padding_mask[:, None, None, :]
            mask = pad if mask is None else mask & pad
        if attn_mask is not None:  # (B, T, T_keys), True = query i may see key j (AIM's prefix-causal mask)
            mask = attn_mask[:, None] if mask is None else mask & attn_mask[:, None]
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0, is_causal=is_causal
        )
        y = y.transpose(1, 2).contiguous().view(b, t, c)  # re-assemble the heads side by side
        return self.resid_dropout(self.proj(y)), present


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

    def forward(self, x, key_padding_mask=None, past=None, attn_mask=None):
        a, present = self.attn(self.ln_1(x), key_padding_mask, past, attn_mask)
        x = x + a
        return x + self.mlp(self.ln_2(x)), present


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

    def forward(self, inputs, key_padding_mask=None, cache: KVCache | None = None, all_layers: bool = False,
                positions: torch.Tensor | None = None, attn_mask: torch.Tensor | None = None):
        """inputs: ids (B, T) or vectors (B, T, input_dim); key_padding_mask: (B, T_past + T), True = real;
        positions: (B, T) the position of each input (default 0..T-1 after the cache; MAE's visible
        patches keep their own); attn_mask: (B, T, T) True where query i may attend to key j.

        Returns the final hidden states (B, T, n_embd), or with all_layers the list of every layer's
        output (embeddings first, final LayerNorm applied to the last); and the updated cache if one
        was passed (an empty list starts one).
        """
        if self.cfg.causal is None:
            raise ValueError("the attention is not set: build with causal=True/False, or let a method set it (use_attention)")
        t = inputs.shape[1]
        past_len = cache[0][0].shape[2] if cache else 0
        if past_len + t > self.cfg.block_size:
            raise ValueError(f"sequence of {past_len + t} exceeds block_size {self.cfg.block_size}")
        if positions is None:
            positions = torch.arange(past_len, past_len + t, device=inputs.device)
        x = self.tok_emb(inputs) if self.cfg.vocab_size is not None else self.in_proj(inputs)
        x = self.drop(x + self.pos_emb(positions))  # (B, T, C)
        layers, new_cache = [x], []
        for i, block in enumerate(self.blocks):
            x, present = block(x, key_padding_mask, cache[i] if cache else None, attn_mask)
            new_cache.append(present)
            layers.append(x)
        x = self.ln_f(x)
        layers[-1] = x
        out = layers if all_layers else x
        return (out, new_cache) if cache is not None else out

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
                generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of logits (B, V): greedy at temperature 0, else sampled from the top-k /
    nucleus (top-p) filtered distribution."""
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
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)


@torch.no_grad()
def generate(model: Transformer, ids: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, generator: torch.Generator | None = None,
             use_cache: bool = True):
    """Continue ids (B, T) by max_new_tokens tokens, yielding each new (B, 1) token as it is chosen.

    With the cache the prompt is read once and each later step feeds one token. Once the text is
    longer than block_size, every step re-reads the last block_size tokens (as without the cache).
    """
    block = model.cfg.block_size
    cache, fresh = [], ids
    for _ in range(max_new_tokens):
        if use_cache and ids.shape[1] <= block:
            hidden, cache = model(fresh, cache=cache)
        else:
            hidden = model(ids[:, -block:])
        token = sample_next(model.logits(hidden[:, -1]), temperature, top_k, top_p, generator)
        ids, fresh = torch.cat([ids, token], dim=1), token
        yield token
