"""SimCLR pretraining throughput: ssl-zoo against lightly's SimCLR recipe, both measured in this run.

Same encoder (torchvision ResNet-18 with its ImageNet stem, as lightly's SimCLR example uses), same
projector (512-512-128), same batch size and optimizer (SGD, lr 0.06), same 32 px images. lightly's
side is its example: PIL images, SimCLRTransform per image in DataLoader workers. ssl-zoo's side is
what `ssl-zoo train method=simclr` runs: uint8 batches from memory and batched tensor views on the
device, inside the Lightning Trainer.

    pip install -e '.[bench]'
    python bench/simclr_throughput.py                      # CPU: a few steps
    python bench/simclr_throughput.py --device cuda --steps 50 --batch-size 256

Prints images/s for the view pipeline alone and end to end, and the ratios ours / lightly.
"""

import argparse
import os
import time

import torch
import torchvision
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ssl_zoo.data.base import BatchedTensors, collate
from ssl_zoo.views import ImageViews
from ssl_zoo.data.shapes import make_shapes

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


class PILImages(Dataset):
    """What torchvision's CIFAR10 hands lightly's transform: one PIL image per item."""

    def __init__(self, images: torch.Tensor, transform):
        self.images, self.transform = images.permute(0, 2, 3, 1).numpy(), transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i])), 0


def lightly_encoder() -> nn.Module:
    return nn.Sequential(*list(torchvision.models.resnet18().children())[:-1], nn.Flatten())


def time_loop(batches, step, warmup: int, steps: int, batch_size: int) -> float:
    """images/s over `steps` batches after `warmup` ones."""
    it = iter(batches)
    for _ in range(warmup):
        step(next(it))
    start = time.perf_counter()
    for _ in range(steps):
        step(next(it))
    return steps * batch_size / (time.perf_counter() - start)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def lightly_side(images, args, device):
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.transforms import SimCLRTransform

    transform = SimCLRTransform(input_size=32, cj_strength=0.5, gaussian_blur=0.0,
                                normalize={"mean": CIFAR_MEAN, "std": CIFAR_STD})
    loader = DataLoader(PILImages(images, transform), batch_size=args.batch_size, shuffle=True, drop_last=True,
                        num_workers=args.workers, persistent_workers=args.workers > 0,
                        pin_memory=device.type == "cuda")

    def views_only(batch):
        (x0, x1), _ = batch
        x0.to(device, non_blocking=True), x1.to(device, non_blocking=True)
        sync(device)

    pipeline = time_loop(loader, views_only, 2, args.pipeline_steps, args.batch_size)

    torch.manual_seed(0)
    backbone, head, criterion = lightly_encoder().to(device), SimCLRProjectionHead(512, 512, 128).to(device), NTXentLoss()
    params = list(backbone.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=0.06)

    def train_step(batch):
        (x0, x1), _ = batch
        x0, x1 = x0.to(device, non_blocking=True), x1.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            loss = criterion(head(backbone(x0)), head(backbone(x1)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync(device)

    end_to_end = time_loop(loader, train_step, args.warmup, args.steps, args.batch_size)
    return pipeline, end_to_end


def ours_side(images, labels, args, device):
    import pytorch_lightning as pl

    from ssl_zoo.methods.simclr import SimCLR

    dataset = BatchedTensors(images, labels)
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True, collate_fn=collate,
                        pin_memory=device.type == "cuda")
    views = ImageViews(32, CIFAR_MEAN, CIFAR_STD).to(device)
    g = torch.Generator(device=device).manual_seed(0)

    def views_only(batch):
        x = batch[0].to(device, non_blocking=True)
        views(x, g), views(x, g)
        sync(device)

    pipeline = time_loop(loader, views_only, 2, args.pipeline_steps, args.batch_size)

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.net, self.out_dim = lightly_encoder(), 512

        def forward(self, x):
            return self.net(x)

    torch.manual_seed(0)
    method = SimCLR(Encoder(), ImageViews(32, CIFAR_MEAN, CIFAR_STD), temperature=0.5, projector_hidden_dim=512,
                    projector_dim=128, optim={"name": "sgd", "lr": 0.06, "momentum": 0.0, "weight_decay": 0.0,
                                              "warmup": 0}, online_probe=False)

    class Clock(pl.Callback):
        def on_train_batch_end(self, trainer, *_):
            sync(device)
            if trainer.global_step == args.warmup:
                self.start = time.perf_counter()

        def on_train_end(self, trainer, *_):
            self.rate = args.steps * args.batch_size / (time.perf_counter() - self.start)

    clock = Clock()

    class Data(pl.LightningDataModule):
        def train_dataloader(self):
            return loader

    trainer = pl.Trainer(accelerator=device.type, devices=1, max_steps=args.warmup + args.steps, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         precision="bf16-mixed" if args.bf16 else "32-true", callbacks=[clock])
    trainer.fit(method, datamodule=Data())
    return pipeline, clock.rate


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8, help="timed training steps per side")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--pipeline-steps", type=int, default=20, help="timed batches of views alone")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1), help="lightly's DataLoader workers")
    parser.add_argument("--bf16", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    n = args.batch_size * (args.warmup + max(args.steps, args.pipeline_steps) + 4)
    images, labels = make_shapes(n, 32, seed=0)

    theirs = lightly_side(images, args, device)
    ours = ours_side(images, labels, args, device)
    print(f"device {device}, batch {args.batch_size}, ResNet-18, 32 px, lightly workers {args.workers}, "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'':22}{'ssl-zoo':>12}{'lightly':>12}{'ratio':>8}")
    print(f"{'views only (img/s)':22}{ours[0]:12.1f}{theirs[0]:12.1f}{ours[0] / theirs[0]:8.2f}")
    print(f"{'end to end (img/s)':22}{ours[1]:12.1f}{theirs[1]:12.1f}{ours[1] / theirs[1]:8.2f}")


if __name__ == "__main__":
    main()
