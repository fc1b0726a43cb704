"""Random image views as batched tensor code: one call draws a different view of every image.

Input: uint8 images (B, 3, H, W). Output: float, normalised views (B, 3, size, size). Every random
draw comes from the `generator` argument, so views are repeatable by seed and step. Per-sample
parameters are drawn as (B,) tensors and applied with broadcasting; nothing loops over images.
The recipe follows torchvision's transforms (RandomResizedCrop, ColorJitter, RandomGrayscale,
GaussianBlur, RandomSolarize), except that colour jitter applies its four parts in a fixed order.
"""

import math
from typing import Annotated

import torch
import torch.nn.functional as F
from torch import nn

from ssl_zoo.settings import Numbers, Range

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601 luma, the weights of torchvision rgb_to_grayscale


def _uniform(n: int, low: float, high: float, g: torch.Generator, device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g, device=device)


def _chance(n: int, p: float, g: torch.Generator, device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=device) < p


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 in [0, 255] or float in [0, 1] -> float in [0, 1]."""
    return images.float() / 255 if images.dtype == torch.uint8 else images.float()


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W)."""
    w = torch.tensor(GRAY_WEIGHTS, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> hue, saturation, value in [0, 1]. The hue, in sixths of a turn, is
    (g - b) / delta, 2 + (b - r) / delta or 4 + (r - g) / delta as r, g or b is the largest channel."""
    r, g, b = x.unbind(1)
    maxc, argmax = x.max(dim=1)  # (B, H, W)
    delta = maxc - x.min(dim=1).values
    between = torch.where(argmax == 0, g - b, torch.where(argmax == 1, b - r, r - g))
    h = torch.where(delta > 0, (between / delta.clamp_min(1e-8) + 2 * argmax) / 6 % 1.0, 0.0)
    s = delta / maxc.clamp_min(1e-8)  # 0 where the pixel is black (delta is 0 there too)
    return torch.stack([h, s, maxc], dim=1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) hue, saturation, value in [0, 1] -> RGB. Closed form, all channels at once: channel
    n = 5, 3, 1 (r, g, b) is v - v s clamp(min(k, 4 - k), 0, 1) with k = (n + 6 h) mod 6."""
    h, s, v = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    n = torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    k = (n + 6 * h) % 6  # (B, 3, H, W)
    return v - v * s * torch.minimum(k, 4 - k).clamp(0, 1)


def color_jitter(x: torch.Tensor, brightness, contrast, saturation, hue) -> torch.Tensor:
    """x in [0, 1], (B, 3, H, W); factors (B,): brightness/contrast/saturation multiply (1 = same),
    hue is a shift in turns (0 = same)."""
    per = lambda f: f.view(-1, 1, 1, 1)  # noqa: E731  (B,) -> (B, 1, 1, 1)
    x = (x * per(brightness)).clamp(0, 1)
    mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * per(contrast) + mean).clamp(0, 1)
    gray = grayscale(x)
    x = ((x - gray) * per(saturation) + gray).clamp(0, 1)
    if bool((hue != 0).any()):
        hsv = rgb_to_hsv(x)
        hsv = torch.cat([(hsv[:, :1] + per(hue)) % 1.0, hsv[:, 1:]], dim=1)
        x = hsv_to_rgb(hsv)
    return x


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Separable Gaussian blur with a different sigma per image; sigma <= 0 leaves an image as it is."""
    b, c, h, w = x.shape
    radius = kernel_size // 2
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-(offsets**2) / (2 * sigma.clamp_min(1e-3).view(-1, 1) ** 2))  # (B, K)
    kernel = torch.where((sigma > 0).view(-1, 1), kernel, (offsets == 0).to(x.dtype).expand_as(kernel))
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (B*C, K)
    y = x.reshape(1, b * c, h, w)  # each image channel is its own conv group
    y = F.pad(y, (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, kernel.view(b * c, 1, -1, 1), groups=b * c)
    y = F.conv2d(y, kernel.view(b * c, 1, 1, -1), groups=b * c)
    return y.view(b, c, h, w)


class ImageViews(nn.Module):
    """One view recipe (the SimCLR paper's Appendix A; BYOL's Table 6), applied to a batch at once."""

    def __init__(
        self,
        size: Annotated[int, Range(1, whole=True)],
        mean: Annotated[tuple[float, float, float], Numbers(Range(), length=3)],
        std: Annotated[tuple[float, float, float], Numbers(Range(0, above=True), length=3)],
        crop_scale: Annotated[tuple[float, float], Numbers(Range(0, 1, above=True), length=2, ordered=True)] = (0.08, 1.0),
        crop_ratio: Annotated[tuple[float, float], Numbers(Range(0, above=True), length=2, ordered=True)] = (3 / 4, 4 / 3),
        flip_prob: Annotated[float, Range(0, 1)] = 0.5,
        jitter_prob: Annotated[float, Range(0, 1)] = 0.8,
        brightness: Annotated[float, Range(0)] = 0.4,
        contrast: Annotated[float, Range(0)] = 0.4,
        saturation: Annotated[float, Range(0)] = 0.4,
        hue: Annotated[float, Range(0, 0.5)] = 0.1,
        grayscale_prob: Annotated[float, Range(0, 1)] = 0.2,
        blur_prob: Annotated[float, Range(0, 1)] = 0.0,
        # pixels at 224 px, as in the papers; scaled to `size`
        blur_sigma: Annotated[tuple[float, float], Numbers(Range(0, above=True), length=2, ordered=True)] = (0.1, 2.0),
        solarize_prob: Annotated[float, Range(0, 1)] = 0.0,
    ):
        super().__init__()
        self.size = size
        self.crop_scale, self.crop_ratio, self.flip_prob = tuple(crop_scale), tuple(crop_ratio), flip_prob
        self.jitter = (jitter_prob, brightness, contrast, saturation, hue)
        self.grayscale_prob = grayscale_prob
        # The papers blur 224 px images with sigma 0.1-2 px and a kernel of 10% of the side; both scale
        # with the image here, so at 32 px the blur is faint, as CIFAR recipes (which drop it) intend.
        self.blur_prob, self.blur_sigma = blur_prob, tuple(s * size / 224 for s in blur_sigma)
        self.blur_kernel = 2 * round(0.05 * size) + 1
        self.solarize_prob = solarize_prob
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 or [0, 1] float (B, 3, H, W) -> standardised float, resized to size x size if needed."""
        x = to_unit_float(images)
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        return (x - self.mean) / self.std

    def crop_and_flip(self, x: torch.Tensor, g: torch.Generator, crop: bool = True) -> torch.Tensor:
        """RandomResizedCrop + RandomHorizontalFlip as one affine resampling per image; crop=False: the
        flip alone (the loader has cropped the view already)."""
        b, dev = x.shape[0], x.device
        if crop:
            area = _uniform(b, *self.crop_scale, g, dev)
            log_ratio = _uniform(b, math.log(self.crop_ratio[0]), math.log(self.crop_ratio[1]), g, dev)
            w = torch.sqrt(area * torch.exp(log_ratio)).clamp(max=1.0)  # crop side / image side
            h = torch.sqrt(area / torch.exp(log_ratio)).clamp(max=1.0)
            cx = (1 - w) * (2 * torch.rand(b, generator=g, device=dev) - 1)  # centre in [-1, 1] coordinates
            cy = (1 - h) * (2 * torch.rand(b, generator=g, device=dev) - 1)
        else:
            w, h, cx, cy = torch.ones(b, device=dev), torch.ones(b, device=dev), torch.zeros(b, device=dev), torch.zeros(b, device=dev)
        flip = torch.where(_chance(b, self.flip_prob, g, dev), -1.0, 1.0)
        theta = torch.zeros(b, 2, 3, device=dev)
        theta[:, 0, 0], theta[:, 0, 2] = w * flip, cx
        theta[:, 1, 1], theta[:, 1, 2] = h, cy
        grid = F.affine_grid(theta, [b, 3, self.size, self.size], align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

    def forward(self, images: torch.Tensor, g: torch.Generator, crop: bool = True) -> torch.Tensor:
        x = to_unit_float(images)
        b, dev = x.shape[0], x.device
        x = self.crop_and_flip(x, g, crop)

        p, bright, contr, sat, hue = self.jitter
        on = _chance(b, p, g, dev)
        one = torch.ones(b, device=dev)
        x = color_jitter(
            x,
            torch.where(on, _uniform(b, 1 - bright, 1 + bright, g, dev), one),
            torch.where(on, _uniform(b, 1 - contr, 1 + contr, g, dev), one),
            torch.where(on, _uniform(b, 1 - sat, 1 + sat, g, dev), one),
            torch.where(on, _uniform(b, -hue, hue, g, dev), one - 1),
        )
        gray = _chance(b, self.grayscale_prob, g, dev).view(-1, 1, 1, 1)
        x = torch.where(gray, grayscale(x).expand_as(x), x)
        if self.blur_prob > 0:
            sigma = _uniform(b, *self.blur_sigma, g, dev)
            x = gaussian_blur(x, torch.where(_chance(b, self.blur_prob, g, dev), sigma, 0.0), self.blur_kernel)
        if self.solarize_prob > 0:
            solar = _chance(b, self.solarize_prob, g, dev).view(-1, 1, 1, 1)
            x = torch.where(solar & (x >= 0.5), 1 - x, x)
        return (x - self.mean) / self.std
