"""`shapes`: an embedded image dataset drawn procedurally, with no files.

Ten shape classes, each drawn with a random colour, size, rotation and position on a textured
background (a random colour with a sinusoidal grating and pixel noise). Rendering is batched tensor
code on a 2x supersampled grid; the same (seed, index range) always gives the same images.
"""

import math

import torch
import torch.nn.functional as F

SHAPES = ("circle", "ellipse", "triangle", "square", "star", "cross", "ring", "crescent", "half_disk", "heart")


def _polygon(r, phi, sides: int):
    """Inside a regular polygon of circumradius 1: r cos((phi mod 2pi/n) - pi/n) <= cos(pi/n)."""
    sector = 2 * math.pi / sides
    return r * torch.cos(torch.remainder(phi, sector) - sector / 2) <= math.cos(math.pi / sides)


def _heart(u, v):
    x, y = 1.15 * u, -1.15 * v + 0.25  # the heart curve (x^2 + y^2 - 1)^3 <= x^2 y^3, centred
    return (x**2 + y**2 - 1) ** 3 <= x**2 * y**3


# Membership tests in shape coordinates (radius about 1): f(u, v, r, phi) -> bool, one per class.
_INSIDE = {
    "circle": lambda u, v, r, phi: r <= 1.0,
    "ellipse": lambda u, v, r, phi: u**2 + (v / 0.5) ** 2 <= 1.0,
    "triangle": lambda u, v, r, phi: _polygon(r, phi, 3),
    "square": lambda u, v, r, phi: _polygon(r, phi, 4),
    # five points: the radius limit is a triangular wave in the angle, 1 at the tips, 0.45 between
    "star": lambda u, v, r, phi: r <= 0.45 + 0.55 * torch.abs(2 * torch.remainder(phi * 5 / (2 * math.pi), 1.0) - 1),
    "cross": lambda u, v, r, phi: ((u.abs() <= 0.3) & (v.abs() <= 1)) | ((v.abs() <= 0.3) & (u.abs() <= 1)),
    "ring": lambda u, v, r, phi: (r <= 1.0) & (r >= 0.6),
    "crescent": lambda u, v, r, phi: (r <= 1.0) & ((u - 0.5) ** 2 + v**2 > 0.75**2),
    "half_disk": lambda u, v, r, phi: (u**2 + (v + 0.4) ** 2 <= 1.0) & (v >= -0.4),
    "heart": lambda u, v, r, phi: _heart(u, v),
}


def shape_masks(labels: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Membership of the points (u, v) in each sample's shape. labels (B,); u, v (B, H, W) -> bool (B, H, W)."""
    r, phi = torch.sqrt(u**2 + v**2), torch.atan2(v, u)
    inside = torch.zeros_like(u, dtype=torch.bool)
    for k, name in enumerate(SHAPES):  # ten batched tests, each over the samples of one class
        idx = (labels == k).nonzero().squeeze(1)
        if len(idx):
            inside[idx] = _INSIDE[name](u[idx], v[idx], r[idx], phi[idx])
    return inside


def render_shapes(labels: torch.Tensor, size: int, generator: torch.Generator,
                  radius=(0.5, 0.8), texture_amplitude=(0.03, 0.1)) -> torch.Tensor:
    """Draw one image per label: uint8 (B, 3, size, size). radius: of the shape, as a fraction of the half side."""
    b, g, hi = labels.shape[0], generator, 2 * size  # render at 2x, then average down (anti-aliasing)
    rand = lambda *shape: torch.rand(*shape, generator=g)  # noqa: E731
    coords = (torch.arange(hi) + 0.5) / hi * 2 - 1  # pixel centres in [-1, 1]
    y, x = torch.meshgrid(coords, coords, indexing="ij")  # (hi, hi)

    scale = radius[0] + (radius[1] - radius[0]) * rand(b)
    cx, cy = (1 - scale) * (2 * rand(b) - 1) * 0.8, (1 - scale) * (2 * rand(b) - 1) * 0.8
    angle = 2 * math.pi * rand(b)
    dx, dy = x - cx.view(-1, 1, 1), y - cy.view(-1, 1, 1)  # (B, hi, hi)
    cos, sin = torch.cos(angle).view(-1, 1, 1), torch.sin(angle).view(-1, 1, 1)
    u, v = (cos * dx + sin * dy) / scale.view(-1, 1, 1), (-sin * dx + cos * dy) / scale.view(-1, 1, 1)
    inside = shape_masks(labels, u, v).unsqueeze(1).float()  # (B, 1, hi, hi)

    shape_colour = rand(b, 3, 1, 1)
    # Background colour kept at least 0.3 away from the shape's in every channel.
    background = (shape_colour + 0.3 + 0.4 * rand(b, 3, 1, 1)) % 1.0
    freq, theta, phase = 2 + 6 * rand(b, 1, 1, 1), math.pi * rand(b, 1, 1, 1), 2 * math.pi * rand(b, 1, 1, 1)
    grating = torch.sin(freq * math.pi * (torch.cos(theta) * x + torch.sin(theta) * y) + phase)  # (B, 1, hi, hi)
    amplitude = texture_amplitude[0] + (texture_amplitude[1] - texture_amplitude[0]) * rand(b, 1, 1, 1)
    texture = amplitude * grating + 0.04 * torch.randn(b, 1, hi, hi, generator=g)
    image = inside * shape_colour + (1 - inside) * (background + texture)
    image = F.avg_pool2d(image.clamp(0, 1), 2)  # (B, 3, size, size)
    return (image * 255).round().to(torch.uint8)


def make_shapes(num_images: int, size: int, seed: int, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """A labelled set of `num_images` images with balanced classes: (uint8 (N, 3, size, size), int64 (N,))."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_images) % len(SHAPES)
    labels = labels[torch.randperm(num_images, generator=g)]
    images = torch.cat([render_shapes(labels[i : i + chunk], size, g) for i in range(0, num_images, chunk)])
    return images, labels
