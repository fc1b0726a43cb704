"""What the masked methods hide from their encoder, as batched tensor code: BERT's token masking,
masked speech prediction's span masking of log-mel frames, MAE's random patches, AIM's prefix-causal
attention and data2vec's patch blocks. Every random draw comes from the
`generator` argument (a function of seed, step and rank: see SSLMethod.step_generator), so a masked
batch is repeatable."""

import torch

from ssl_zoo.data.tokenizer import MASK_ID, NUM_SPECIAL
from ssl_zoo.losses import IGNORE


# --- BERT's masking -----------------------------------------------------------------------------
def mask_tokens(ids: torch.Tensor, generator: torch.Generator, vocab_size: int, select_prob: float = 0.15,
                mask_frac: float = 0.8, random_frac: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's corruption of a batch of ids (B, T): each ordinary token is selected with probability
    select_prob; of the selected, mask_frac become [MASK], random_frac a random ordinary token and the
    rest stay. Returns (inputs, targets), targets = the original id where selected, else IGNORE."""

    def uniform():
        return torch.rand(ids.shape, generator=generator, device=ids.device)

    selected = (uniform() < select_prob) & (ids >= NUM_SPECIAL)  # never [PAD], [CLS], ...
    action = uniform()
    to_mask = selected & (action < mask_frac)
    to_random = selected & (action >= mask_frac) & (action < mask_frac + random_frac)
    random_ids = torch.randint(NUM_SPECIAL, vocab_size, ids.shape, generator=generator, device=ids.device)
    inputs = torch.where(to_mask, MASK_ID, torch.where(to_random, random_ids, ids))
    return inputs, torch.where(selected, ids, IGNORE)


# --- masked speech prediction's corruption --------------------------------------------------------
def span_mask(lengths: torch.Tensor, max_len: int, prob: float, span: int, generator: torch.Generator) -> torch.Tensor:
    """Choose about `prob` of each utterance's real frames in non-overlapping spans of `span` frames.

    lengths: (B,) real frames. Returns chosen (B, max_len) bool. An utterance of n frames gets
    round(prob * n / span) spans (at least one, so a short word is never left unmasked) placed
    uniformly at random: the frames left free are shared out over the gaps between spans. A clip
    shorter than one span gets a single span of round(prob * n) frames (at least one).
    """
    device = lengths.device
    short = lengths < span
    span_len = torch.where(short, (prob * lengths).round().long().clamp_min(1), span)  # (B,)
    count = torch.where(short, 1, (prob * lengths / span).round().long().clamp_min(1))  # (B,) spans per utterance
    free = (lengths - count * span_len).clamp_min(0)  # (B,) frames outside the spans
    slots = torch.arange(int(count.max()), device=device)  # (K,)
    used = slots[None, :] < count[:, None]  # (B, K)
    # Stars and bars: K sorted gap offsets in [0, free] put K spans in order without overlap.
    offsets = (torch.rand(used.shape, generator=generator, device=device) * (free[:, None] + 1)).floor().long()
    offsets = offsets.masked_fill(~used, torch.iinfo(torch.long).max).sort(dim=1).values.masked_fill(~used, 0)
    starts = offsets + slots[None, :] * span_len[:, None]  # (B, K)
    edges = torch.zeros(len(lengths), max_len + 1, device=device)
    edges.scatter_add_(1, starts.clamp(max=max_len), used.float())
    edges.scatter_add_(1, (starts + span_len[:, None]).clamp(max=max_len), -used.float())
    return edges.cumsum(1)[:, :max_len] > 0


def mask_frames(feats: torch.Tensor, mask: torch.Tensor, generator: torch.Generator, prob: float = 0.15, span: int = 7,
                zero_frac: float = 0.8, replace_frac: float = 0.1, freq_mask_width: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Mockingjay / TERA's corruption of log-mel frames (B, T, F) with real-frame mask (B, T).

    Spans of frames are chosen (see span_mask); then, decided once per utterance, the chosen frames are
    zeroed (zero_frac of utterances), replaced by randomly drawn real frames of the same utterance
    (replace_frac) or kept as they are (the rest). With freq_mask_width > 0 (TERA), each utterance also
    loses a band of 0..freq_mask_width consecutive mel bins at every frame. Returns (inputs, masked):
    masked (B, T, F) marks what the loss reconstructs, the chosen frames (all bins) and, as s3prl's
    TERA does, the hidden band at every real frame.
    """
    b, t, f = feats.shape
    lengths = mask.sum(1)
    chosen = span_mask(lengths, t, prob, span, generator)
    action = torch.rand(b, 1, 1, generator=generator, device=feats.device)  # (B, 1, 1): one decision per utterance
    source = (torch.rand(b, t, generator=generator, device=feats.device) * lengths[:, None]).long()  # (B, T) real frames
    replaced = feats.gather(1, source[..., None].expand(-1, -1, f))
    corrupted = torch.where(action < zero_frac, torch.zeros_like(feats),
                            torch.where(action < zero_frac + replace_frac, replaced, feats))
    inputs = torch.where(chosen[..., None], corrupted, feats)
    masked = chosen[..., None].expand(b, t, f)  # (B, T, F)
    if freq_mask_width > 0:
        width = torch.randint(0, freq_mask_width + 1, (b, 1), generator=generator, device=feats.device)
        low = (torch.rand(b, 1, generator=generator, device=feats.device) * (f - width + 1)).long()
        bins = torch.arange(f, device=feats.device)[None, :]
        band = (bins >= low) & (bins < low + width)  # (B, F)
        inputs = inputs.masked_fill(band[:, None, :], 0.0)
        masked = masked | (band[:, None, :] & mask[..., None])  # the band at every real frame
    return inputs, masked


# --- MAE's patch masking --------------------------------------------------------------------------
def random_patches(batch: int, num_patches: int, mask_ratio: float, generator: torch.Generator,
                   device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """MAE's per-image random masking, batched: a random permutation of the patches of each image (an
    argsort of uniform noise), the first round((1 - mask_ratio) N) visible. Returns (visible (B, K),
    masked (B, N - K)) patch indices, each row sorted."""
    keep = max(1, round((1 - mask_ratio) * num_patches))
    order = torch.rand(batch, num_patches, generator=generator, device=device).argsort(dim=1)
    return order[:, :keep].sort(dim=1).values, order[:, keep:].sort(dim=1).values


# --- AIM's prefix-causal attention --------------------------------------------------------------------
def prefix_causal_mask(prefix: torch.Tensor, length: int) -> torch.Tensor:
    """AIM's attention over a sequence of `length` patches: the first prefix[b] attend to each other
    both ways, every later patch to itself and all before it. prefix (B,) -> (B, L, L) bool, True =
    query i may see key j. A prefix of 1 is plain causal attention; of L, bidirectional."""
    i = torch.arange(length, device=prefix.device)
    causal = i[None, :] <= i[:, None]  # (L, L): key j <= query i
    in_prefix = i[None, None, :] < prefix[:, None, None]  # (B, 1, L): key j inside the prefix
    return causal[None] | (in_prefix & (i[None, :, None] < prefix[:, None, None]))


# --- data2vec's image masking ---------------------------------------------------------------------
def block_patches(batch: int, grid: int, block: int, ratio: float, generator: torch.Generator, device=None) -> torch.Tensor:
    """Masks of patch blocks, batched: the grid x grid patches grouped into block x block squares, a
    random `ratio` of the squares of each image hidden whole (BEiT and data2vec mask blocks, not lone
    patches). Returns (B, grid * grid) bool in raster order, True = hidden."""
    cells = -(-grid // block)  # squares per side (the last may hang over the edge)
    _, hidden = random_patches(batch, cells * cells, 1 - ratio, generator, device)  # (B, H) hidden squares
    squares = torch.zeros(batch, cells * cells, dtype=torch.bool, device=device).scatter_(1, hidden, True)
    full = squares.view(batch, cells, 1, cells, 1).expand(-1, -1, block, -1, block).reshape(batch, cells * block, cells * block)
    return full[:, :grid, :grid].reshape(batch, grid * grid)
