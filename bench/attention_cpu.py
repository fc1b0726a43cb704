"""Attention on a CPU in bf16: ssl-zoo's `attention()` (nn/transformer.py: two matmuls and a softmax up to
EXPLICIT_MAX_KEYS keys, SDPA past them) against SDPA's fused kernel, both measured in this run, and the
default models' training steps in fp32 and bf16 autocast with each kernel (what trainer.precision=auto
compares, ssl_zoo/run/precision.py).

    python bench/attention_cpu.py              # attention alone, then the demo's and grid's models
    python bench/attention_cpu.py --no-models  # attention alone

Prints times and the ratio SDPA / ours (higher is better for ssl-zoo).
"""

import argparse
import copy
import time
import warnings

import torch
import torch.nn.functional as F

from ssl_zoo.nn import transformer

# (name, batch, heads, queries, keys, head size): training shapes of the CPU models, GPT-2's, and decoding
TRAINING = [("transformer_tiny, batch 32", 32, 4, 128, 128, 32), ("baby GPT, batch 8", 8, 6, 256, 256, 64),
            ("GPT-2 small at 256, batch 2", 2, 12, 256, 256, 64), ("384 keys, batch 4", 4, 6, 384, 384, 64),
            ("GPT-2 small at 1024, batch 1", 1, 12, 1024, 1024, 64)]
DECODING = [(f"decode {b} row{'s' if b > 1 else ''}, {n} keys", b, 6, 1, n, 64) for b in (1, 8) for n in (64, 256)]
MODELS = ["experiment=zoo_demo +zoo_demo=gpt", "experiment=zoo_demo +zoo_demo=bert", "experiment=zoo_demo +zoo_demo=masked_speech",
          "+grid=gpt", "+grid=mae", "+grid=masked_speech"]


def timed(function, repeats: int) -> float:
    for _ in range(max(3, repeats // 10)):
        function()
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats


def with_kernel(explicit: bool, function):
    """function() with our explicit path on (the shipped EXPLICIT_MAX_KEYS) or off (SDPA everywhere)."""
    shipped = transformer.EXPLICIT_MAX_KEYS

    def run():
        transformer.EXPLICIT_MAX_KEYS = shipped if explicit else -1
        try:
            return function()
        finally:
            transformer.EXPLICIT_MAX_KEYS = shipped
    return run


def attention_alone(rows, backward: bool, repeats: int) -> None:
    for name, b, nh, t, n, hs in rows:
        q = torch.randn(b, nh, t, hs, dtype=torch.bfloat16, requires_grad=backward)
        k, v = (torch.randn(b, nh, n, hs, dtype=torch.bfloat16, requires_grad=backward) for _ in range(2))
        causal = t == n
        mask = None if causal else torch.ones(b, 1, 1, n, dtype=torch.bool)  # decoding: the cache's mask
        grad = torch.randn(b, nh, t, hs, dtype=torch.bfloat16)

        def step():
            out = transformer.attention(q, k, v, mask, is_causal=causal)
            if backward:
                out.backward(grad)
        sdpa, ours = (timed(with_kernel(explicit, step), repeats) for explicit in (False, True))
        unit, scale = ("ms", 1e3) if backward else ("us", 1e6)
        print(f"{name:32s} SDPA {sdpa * scale:8.1f} {unit}   ssl-zoo {ours * scale:8.1f} {unit}   ratio {sdpa / ours:.2f}")


def models(overrides: list[str]) -> None:
    from hydra import compose, initialize_config_dir

    from ssl_zoo import build, config_dir
    from ssl_zoo.run import precision

    warnings.filterwarnings("ignore")
    for over in overrides:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose(config_name="train", overrides=over.split())
        cfg, datamodule, method = build.for_training(cfg)
        inputs, _ = next(iter(datamodule.train_dataloader()))
        probe = copy.deepcopy(method).train()
        fp32 = precision.step_seconds(probe, inputs, False)
        bf16 = {explicit: with_kernel(explicit, lambda: precision.step_seconds(probe, inputs, True))() for explicit in (False, True)}
        print(f"{over:45s} fp32 {fp32 * 1e3:6.1f} ms   bf16 with SDPA {bf16[False] * 1e3:6.1f} ms ({bf16[False] / fp32:.2f} of fp32)"
              f"   bf16 with ssl-zoo's {bf16[True] * 1e3:6.1f} ms ({bf16[True] / fp32:.2f})")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--no-models", action="store_true")
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, explicit attention up to "
          f"{transformer.EXPLICIT_MAX_KEYS} keys; forward and backward:")
    attention_alone(TRAINING, True, 10)
    print("decoding (forward, one query per row):")
    attention_alone(DECODING, False, 300)
    if not args.no_models:
        print("training step (forward and backward of the method's loss on one real batch, min of 3):")
        models(MODELS)


if __name__ == "__main__":
    main()
