"""Image methods' training step: channels-last convolutions and bf16 autocast against the plain fp32,
channels-first step, measured in this run on the same batch.

One whole step of `ssl-zoo train method=<simclr|byol>` as the Trainer runs it: both views drawn from a
uint8 batch, the encoder (online and, for BYOL, target), heads, loss, backward and AdamW. The reference
is the same step with the encoder fed channels-first (NCHW) fp32 tensors, as before ssl-zoo's image
backbones switched to channels-last; `trainer=cpu_image` adds bf16 autocast where the CPU computes bf16
natively (AMX / AVX512-BF16).

    python bench/image_step.py                          # CPU: small_cnn, batch 128, 32 px
    python bench/image_step.py --model resnet18 --batch-size 64
    python bench/image_step.py --device cuda --model resnet18 --batch-size 256

Prints seconds per step for each setting and the speed-up over the reference (higher is better).
"""

import argparse
import warnings

import torch
from text_throughput import timed

from ssl_zoo import cpu_precision
from ssl_zoo.api import compose
from ssl_zoo.build import build_method


def set_memory_format(method, memory_format) -> None:
    """The layout every encoder of the method (online and target) feeds its convolutions."""
    for module in method.modules():
        if hasattr(module, "memory_format"):
            module.memory_format = memory_format


def step_of(method, images, bf16: bool, device):
    opt = torch.optim.AdamW(method.parameters(), lr=1e-4)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = method.ssl_step(images)[0]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="small_cnn")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    args = p.parse_args()
    device = torch.device(args.device)
    warnings.filterwarnings("ignore", message=".*self.log.*")  # the steps run outside a Trainer
    print(f"device {device}, model {args.model}, batch {args.batch_size}, 32 px; this CPU's bf16: "
          f"{'native' if cpu_precision() == 'bf16-mixed' else 'emulated'}")

    for name in ["simclr", "byol"]:
        torch.manual_seed(0)
        method = build_method(compose(f"method={name}", f"model={args.model}")).to(device).train()
        images = torch.randint(0, 256, (args.batch_size, 3, 32, 32), dtype=torch.uint8, device=device)
        set_memory_format(method, torch.contiguous_format)
        reference = timed(step_of(method, images, False, device), args.warmup, args.steps, device)
        set_memory_format(method, torch.channels_last)
        fp32 = timed(step_of(method, images, False, device), args.warmup, args.steps, device)
        bf16 = timed(step_of(method, images, True, device), args.warmup, args.steps, device)
        print(f"{name}: fp32 channels-first {reference:.3f} s/step (reference); channels-last fp32 {fp32:.3f} "
              f"({reference / fp32:.2f}x); channels-last bf16 {bf16:.3f} ({reference / bf16:.2f}x)")


if __name__ == "__main__":
    main()
