"""The static key/value cache that generation feeds the transformer (nn/transformer.py): every layer's keys and
values preallocated and written in place, a length per row (infer/decode.py decodes with it)."""

from dataclasses import dataclass

import torch


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

    def begin(self, t: int, positions: torch.Tensor | None, block_size: int):
        """What one forward of T new inputs per row needs: their positions (B, T) (default: each row's next
        ones), the CacheWrite of every layer, and the attention mask (B, T, end), query at position p
        seeing its own row's keys 0..p (None when every row sees every key)."""
        device = self.lengths.device
        if positions is None:
            positions = self.row_lengths()[:, None] + torch.arange(t, device=device)  # (B, T)
        write = self.writer(positions)
        if not self.fixed_shapes and write.end > min(self.capacity, block_size):
            raise ValueError(f"sequence of {write.end} exceeds the cache ({self.capacity}) or block_size {block_size}")
        attn_mask = torch.arange(write.end, device=device) <= positions[:, :, None]
        if t == 1 and not self.fixed_shapes and bool(attn_mask.all()):  # no mask to apply
            attn_mask = None
        return positions, write, attn_mask

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
