"""Text model speed: ssl-zoo's transformer against Hugging Face `transformers`, both measured in this run.

1. GPT training: tokens/s of a full step (forward, next-token loss, backward, AdamW) against
   GPT2LMHeadModel with the same shape (layers, heads, width, context, vocabulary, tied output
   layer, no dropout) and batch.
2. Generation: new tokens/s of greedy decoding with the KV cache (ssl_zoo.infer.decode.generate)
   against `GPT2LMHeadModel.generate(use_cache=True)`, same prompt and length: one prompt, and
   --gen-batch prompts of mixed lengths decoded together. Ours is loaded as `ssl-zoo generate` loads
   a checkpoint: linear layers prepacked for oneDNN on a CPU (ssl_zoo/infer/packed.py); then again with
   its decoding steps through torch.compile (`compile=true`; the compile time printed, not timed).
3. BERT training: time of a masked-LM step against BertForMaskedLM of the same shape, on the same
   masked batch.

    pip install -e '.[bench]'
    python bench/text_throughput.py                                # CPU, tiny shape
    python bench/text_throughput.py --shape baby                   # nanoGPT's baby GPT (6 x 384, context 256)
    python bench/text_throughput.py --shape gpt2 --steps 6         # GPT-2 small (12 x 768), context 256
    python bench/text_throughput.py --device cuda --n-layer 12 --n-head 12 --n-embd 768 --block-size 1024 --batch-size 8

Prints each figure and the ratio ours / transformers (higher is better for ssl-zoo).
"""

import argparse
import time

import torch
import torch.nn.functional as F

from ssl_zoo.masking import mask_tokens
from ssl_zoo.methods.bert import BERT
from ssl_zoo.methods.gpt import GPT
from ssl_zoo.device import computes_bf16
from ssl_zoo.infer.decode import generate
from ssl_zoo.infer.load import inference_dtype
from ssl_zoo.infer.packed import pack_linears
from ssl_zoo.nn.transformer import Transformer
from ssl_zoo.run.precision import MARGIN


# nanoGPT's baby GPT (Shakespeare characters) and GPT-2 small at a 256 context, as measured in issue 19
SHAPES = {
    "baby": dict(vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384, batch_size=8, prompt_length=64, new_tokens=180),
    "gpt2": dict(vocab_size=50304, block_size=256, n_layer=12, n_head=12, n_embd=768, batch_size=2, prompt_length=64,
                 new_tokens=100),
}


def timed(step, warmup: int, repeats: int, device) -> float:
    """Seconds per call of step(), after warmup calls."""
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def ours(args, causal, device):
    torch.manual_seed(0)
    return Transformer(vocab_size=args.vocab_size, block_size=args.block_size, n_layer=args.n_layer, n_head=args.n_head,
                       n_embd=args.n_embd, dropout=0.0, causal=causal).to(device)


def hf_gpt2(args, device):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=args.vocab_size, n_positions=args.block_size, n_layer=args.n_layer, n_head=args.n_head,
                     n_embd=args.n_embd, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True,
                     bos_token_id=0, eos_token_id=0, attn_implementation="sdpa")
    return GPT2LMHeadModel(cfg).to(device)


def hf_bert(args, device):
    from transformers import BertConfig, BertForMaskedLM

    cfg = BertConfig(vocab_size=args.vocab_size, hidden_size=args.n_embd, num_hidden_layers=args.n_layer,
                     num_attention_heads=args.n_head, intermediate_size=4 * args.n_embd,
                     max_position_embeddings=args.block_size, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                     attn_implementation="sdpa")
    return BertForMaskedLM(cfg).to(device)


def autocast(args, device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)


def training_step(model, loss, args, device, bf16: bool | None = None):
    """One whole optimizer step of model on loss() (forward, backward, AdamW), as a closure to time;
    in bf16 autocast with --bf16 (or as bf16 says)."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type in ("cpu", "cuda"))  # as ssl_zoo/optim.py, both sides
    precision = autocast(args, device) if bf16 is None else torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def step():
        with precision:
            value = loss()
        value.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def gpt_training(args, device) -> tuple[float, float]:
    ids = torch.randint(0, args.vocab_size, (args.batch_size, args.block_size + 1), device=device)
    gpt = GPT(ours(args, True, device)).to(device)  # what `ssl-zoo train method=gpt` runs
    hf = hf_gpt2(args, device)
    ours_step = training_step(gpt, lambda: gpt.ssl_step(ids)[0], args, device)
    hf_step = training_step(hf, lambda: F.cross_entropy(hf(input_ids=ids[:, :-1]).logits.flatten(0, 1).float(),
                                                        ids[:, 1:].flatten()), args, device)
    tokens = args.batch_size * args.block_size
    ours_speed, hf_speed = tokens / timed(ours_step, args.warmup, args.steps, device), tokens / timed(hf_step, args.warmup, args.steps, device)
    ours_bf16 = None
    if not args.bf16 and device.type == "cpu" and computes_bf16(device):  # the other precision auto may pick
        ours_bf16 = tokens / timed(training_step(gpt, lambda: gpt.ssl_step(ids)[0], args, device, bf16=True), args.warmup,
                                   args.steps, device)
    return ours_speed, hf_speed, ours_bf16


@torch.no_grad()
def generation(args, device, batch: int = 1, weights: torch.dtype = torch.float32, compile: bool = False):
    """New tokens/s of greedy decoding of `batch` prompts together, ours and Hugging Face's, and the
    seconds of our warm-up call (with compile: torch.compile's compilation); with batch > 1 the prompts
    have mixed lengths (prompt_length / 4 .. prompt_length): ours in the static cache, each row at its
    own position; Hugging Face's left-padded with an attention mask, as its generate wants. weights: our
    model's dtype (`ssl-zoo generate precision=`); Hugging Face's stays fp32, its default. compile: our
    decoding steps through torch.compile (`ssl-zoo generate compile=true`); Hugging Face's eager, its
    default."""
    g = torch.Generator().manual_seed(0)
    lengths = [args.prompt_length] if batch == 1 else torch.linspace(args.prompt_length // 4, args.prompt_length, batch).int().tolist()
    prompts = [torch.randint(1, args.vocab_size, (n,), generator=g).tolist() for n in lengths]
    padded = torch.zeros(batch, max(lengths), dtype=torch.long)
    for i, p in enumerate(prompts):
        padded[i, max(lengths) - len(p):] = torch.tensor(p)
    padded, attention = padded.to(device), (padded != 0).long().to(device)
    new = args.new_tokens
    model = pack_linears(ours(args, True, device).eval().to(weights))  # as `ssl-zoo generate` loads it
    hf = hf_gpt2(args, device).eval()

    def ours_generate():
        with autocast(args, device):
            for _ in generate(model, prompts, new, temperature=0, compile=compile):
                pass

    def hf_generate():
        with autocast(args, device):
            hf.generate(padded, attention_mask=attention, max_new_tokens=new, min_new_tokens=new,
                        do_sample=False, use_cache=True, pad_token_id=0)

    warmup = timed(ours_generate, 0, 1, device)  # with compile: compiles (a new model, so at every call of this function)
    hf_generate()
    repeats, seconds = max(2, args.steps // 4), [0.0, 0.0]
    for _ in range(repeats):  # interleaved: both sides see the same moments of a VM whose speed drifts by 20% over minutes
        seconds[0] += timed(ours_generate, 0, 1, device)
        seconds[1] += timed(hf_generate, 0, 1, device)
    tokens = new * batch * repeats
    return tokens / seconds[0], tokens / seconds[1], warmup


def bert_training(args, device) -> tuple[float, float]:
    ids = torch.randint(7, args.vocab_size, (args.batch_size, args.block_size), device=device)
    bert = BERT(ours(args, False, device)).to(device)  # what `ssl-zoo train method=bert` runs
    hf = hf_bert(args, device)
    # both sides read the same masked batch (ssl-zoo's masks drawn from a fixed generator every step)
    inputs, targets = mask_tokens(ids, torch.Generator(device=device).manual_seed(0), args.vocab_size)
    ours_step = training_step(bert, lambda: bert.masked_step(ids, torch.Generator(device=device).manual_seed(0))[0],
                              args, device)
    hf_step = training_step(hf, lambda: hf(input_ids=inputs, labels=targets).loss, args, device)
    return timed(ours_step, args.warmup, args.steps, device), timed(hf_step, args.warmup, args.steps, device)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--vocab-size", type=int, default=2048)
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=6, help="untimed steps first (fewer read 10-15%% slow on a CPU)")
    p.add_argument("--prompt-length", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=100)
    p.add_argument("--gen-batch", type=int, default=8, help="also decode this many prompts of mixed lengths together")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile'd generation figures")
    p.add_argument("--shape", choices=sorted(SHAPES), help="a named shape (overrides the sizes above)")
    args = p.parse_args()
    for key, value in SHAPES.get(args.shape, {}).items():
        setattr(args, key, value)
    device = torch.device(args.device)
    import transformers

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, device {device}, "
          f"{args.n_layer} layers x {args.n_embd} wide, {args.n_head} heads, context {args.block_size}, "
          f"vocab {args.vocab_size}, batch {args.batch_size}, bf16 {args.bf16}")
    a, b, a_bf16 = gpt_training(args, device)
    print(f"GPT training   tokens/s  ssl-zoo {a:10.0f}   transformers GPT-2 {b:10.0f}   ratio {a / b:.2f}")
    if a_bf16:  # trainer.precision=auto takes bf16 where its step is under 0.8 of fp32's (ssl_zoo/run/precision.py)
        auto = a_bf16 if a / a_bf16 < MARGIN else a
        print(f"GPT training   tokens/s  ssl-zoo bf16 autocast {a_bf16:.0f}; at precision=auto ({'bf16' if auto == a_bf16 else 'fp32'} "
              f"here) {auto:.0f} against transformers' default fp32 {b:.0f}   ratio {auto / b:.2f}")
    a, b, _ = generation(args, device)
    print(f"generation     tokens/s  ssl-zoo {a:10.1f}   transformers generate {b:7.1f}   ratio {a / b:.2f}")
    if args.gen_batch > 1:
        a, b, _ = generation(args, device, args.gen_batch)
        print(f"generation x{args.gen_batch:<3} tokens/s  ssl-zoo {a:10.1f}   transformers generate {b:7.1f}   ratio {a / b:.2f}"
              "   (mixed prompt lengths)")
    bf16_weights = inference_dtype("auto", device) == torch.bfloat16
    if bf16_weights and not args.bf16:  # what `ssl-zoo generate precision=auto` runs here, against HF's default
        for batch in sorted({1, args.gen_batch}):
            a, b, _ = generation(args, device, batch, torch.bfloat16)
            print(f"generation x{batch:<3} tokens/s  ssl-zoo bf16 weights (precision=auto here) {a:10.1f}   "
                  f"transformers fp32 {b:7.1f}   ratio {a / b:.2f}")
    if not args.no_compile:  # `ssl-zoo generate compile=true` (precision=auto), against HF's default
        weights = torch.bfloat16 if bf16_weights and not args.bf16 else torch.float32
        for batch in sorted({1, args.gen_batch}):
            a, b, first = generation(args, device, batch, weights, compile=True)
            print(f"generation x{batch:<3} tokens/s  ssl-zoo {str(weights)[6:]} weights, compile=true {a:10.1f}   "
                  f"transformers {b:7.1f}   ratio {a / b:.2f}   (first call, compiling: {first:.1f} s)")
    a, b = bert_training(args, device)
    print(f"BERT training  s/step    ssl-zoo {a:10.4f}   transformers BertForMaskedLM {b:.4f}   ratio {b / a:.2f}")


if __name__ == "__main__":
    main()
