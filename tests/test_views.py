import torch
from torchvision.transforms.v2 import functional as TF

from ssl_zoo.views import ImageViews, color_jitter, gaussian_blur, grayscale

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def images(n=8, size=32, seed=0):
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_views_keep_shape_and_give_float_and_differ_between_draws():
    views = ImageViews(32, MEAN, STD, blur_prob=0.5, solarize_prob=0.2)
    x = images()
    g = torch.Generator().manual_seed(0)
    a, b = views(x, g), views(x, g)
    assert a.shape == b.shape == (8, 3, 32, 32) and a.dtype == torch.float32
    assert torch.isfinite(a).all()
    assert (a - b).abs().mean(dim=(1, 2, 3)).min() > 0.01  # every image got two different views


def test_views_resize_to_the_configured_size_and_repeat_by_seed():
    views = ImageViews(24, MEAN, STD)
    x = images(4, 40)
    a = views(x, torch.Generator().manual_seed(3))
    b = views(x, torch.Generator().manual_seed(3))
    assert a.shape == (4, 3, 24, 24)
    torch.testing.assert_close(a, b)


def test_full_crop_without_flip_or_colour_returns_the_normalised_image():
    views = ImageViews(32, MEAN, STD, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_prob=0.0,
                       jitter_prob=0.0, grayscale_prob=0.0)
    x = images(4)
    torch.testing.assert_close(views(x, torch.Generator().manual_seed(0)), views.normalize(x), atol=1e-5, rtol=0)


def test_batched_colour_jitter_matches_torchvision_per_image():
    x = images(6).float() / 255
    g = torch.Generator().manual_seed(1)
    b, c, s = (0.6 + 0.8 * torch.rand(6, generator=g) for _ in range(3))
    h = 0.2 * torch.rand(6, generator=g) - 0.1
    out = color_jitter(x, b, c, s, h)
    for i in range(6):
        ref = TF.adjust_brightness(x[i], b[i].item())
        ref = TF.adjust_contrast(ref, c[i].item())
        ref = TF.adjust_saturation(ref, s[i].item())
        ref = TF.adjust_hue(ref, h[i].item())
        torch.testing.assert_close(out[i], ref, atol=2e-3, rtol=0)


def test_grayscale_matches_torchvision():
    x = images(3).float() / 255
    torch.testing.assert_close(grayscale(x), TF.rgb_to_grayscale(x), atol=1e-5, rtol=0)


def test_blur_with_zero_sigma_is_identity_and_keeps_mean():
    x = images(4).float() / 255
    sigma = torch.tensor([0.0, 1.0, 0.0, 2.0])
    y = gaussian_blur(x, sigma, kernel_size=5)
    torch.testing.assert_close(y[0], x[0])
    torch.testing.assert_close(y[2], x[2])
    assert (y[1] - x[1]).abs().mean() > 0.01
    torch.testing.assert_close(y[3].mean(), x[3].mean(), atol=0.01, rtol=0)


def test_a_view_of_a_crop_the_loader_cut_keeps_the_crop_and_only_flips_it():
    from ssl_zoo.views import ImageViews

    views = ImageViews(size=8, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), flip_prob=1.0, jitter_prob=0.0, grayscale_prob=0.0)
    images = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    out = views(images, torch.Generator().manual_seed(0), crop=False)
    assert torch.allclose(out, views.normalize(images.flip(-1)), atol=1e-5)  # the whole crop, mirrored
