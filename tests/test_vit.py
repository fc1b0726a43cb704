"""The ViT front end and the patch methods: patching round trip, MAE's masking and that its encoder sees
only the visible patches, AIM's prefix-causal attention, and their losses against direct computation."""

import pytest
import torch

from conftest import TINY, run_cli
from ssl_zoo.losses import normalised_patches, masked_mse
from ssl_zoo.masking import prefix_causal_mask, random_patches
from ssl_zoo.methods.aim import AIM
from ssl_zoo.methods.mae import MAE, place
from ssl_zoo.nn.vit import ViT, patchify, unpatchify
from ssl_zoo.views import ImageViews


def views(size=16):
    return ImageViews(size, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), crop_scale=(0.2, 1.0), jitter_prob=0.0, grayscale_prob=0.0)


def vit(size=16, patch=4):
    torch.manual_seed(0)
    return ViT(size, patch_size=patch, n_layer=2, n_head=2, n_embd=32).eval()


def test_patchify_round_trip_and_each_patch_is_its_block_of_pixels():
    images = torch.randn(2, 3, 8, 12)
    patches = patchify(images, 4)  # a 2 x 3 grid of 4 x 4 patches
    assert patches.shape == (2, 6, 48)
    torch.testing.assert_close(unpatchify(patches, 4, 8, 12), images)
    # patch 4 is row 1, column 1 (raster order), its values (row, column, channel)
    torch.testing.assert_close(patches[1, 4], images[1, :, 4:8, 4:8].permute(1, 2, 0).reshape(-1))


def test_random_patches_hide_the_ratio_of_each_image_and_differ_between_images():
    g = torch.Generator().manual_seed(0)
    visible, hidden = random_patches(8, 64, 0.75, g)
    assert visible.shape == (8, 16) and hidden.shape == (8, 48)
    for v, h in zip(visible, hidden):
        assert sorted(v.tolist() + h.tolist()) == list(range(64))  # a partition of the patches
    assert len({tuple(v.tolist()) for v in visible}) == 8  # each image its own draw


def test_vit_positions_travel_with_the_patches_it_keeps():
    model, images = vit(), torch.randn(2, 3, 16, 16)
    everything = model.tokens(images)
    identity = torch.arange(16).expand(2, -1)
    torch.testing.assert_close(model.tokens(images, keep=identity), everything)
    # Bidirectional attention with each patch's own position: reordering the kept patches reorders
    # their states and changes nothing else.
    shuffled = torch.stack([torch.randperm(16, generator=torch.Generator().manual_seed(i)) for i in range(2)])
    torch.testing.assert_close(model.tokens(images, keep=shuffled), everything.gather(1, shuffled[..., None].expand(-1, -1, 32)),
                               rtol=1e-4, atol=1e-5)
    # Without the positions (the patches at 0 .. K-1) the states would differ.
    x = model.patches(images).gather(1, shuffled[..., None].expand(-1, -1, model.patch_dim))
    assert not torch.allclose(model.transformer(x), everything.gather(1, shuffled[..., None].expand(-1, -1, 32)), atol=1e-3)


def test_mae_encoder_sees_only_the_visible_patches():
    model = vit()
    images = torch.randn(2, 3, 16, 16)
    g = torch.Generator().manual_seed(1)
    visible, hidden = random_patches(2, model.num_patches, 0.75, g)
    changed = patchify(images, 4).clone()
    changed.scatter_(1, hidden[..., None].expand(-1, -1, 48), torch.randn(2, hidden.shape[1], 48) * 10)
    before = model.tokens(images, keep=visible)
    after = model.tokens(unpatchify(changed, 4, 16, 16), keep=visible)
    torch.testing.assert_close(before, after)  # the hidden patches changed, the encoding did not


def test_mae_decoder_input_puts_encodings_back_in_place_and_mask_tokens_elsewhere():
    visible = torch.tensor([[2, 0]])
    encoded = torch.tensor([[[1.0, 1.0], [2.0, 2.0]]])
    full = place(visible, encoded, torch.tensor([9.0, 9.0]), 4)
    torch.testing.assert_close(full, torch.tensor([[[2.0, 2.0], [9.0, 9.0], [1.0, 1.0], [9.0, 9.0]]]))


def test_mae_loss_is_mse_on_the_hidden_patches_normalised_pixels():
    torch.manual_seed(0)
    method = MAE(vit(), views(), mask_ratio=0.75, decoder_layers=1, decoder_dim=16, decoder_heads=2, online_probe=False)
    method.train()
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    loss, features = method.ssl_step(images)
    assert features.shape == (4, 32) and loss.ndim == 0
    # The same step by hand, from the same random draws.
    g = method.step_generator()
    x = method.view(0, images, g)
    visible, hidden = random_patches(4, 16, 0.75, g)
    decoded = method.decoder(place(visible, method.backbone.tokens(x, keep=visible), method.mask_token, 16))
    pred = method.pixel_head(decoded)
    target = patchify(x, 4)
    direct = torch.stack([
        ((pred[b, i] - (target[b, i] - target[b, i].mean()) / (target[b, i].var() + 1e-6).sqrt()) ** 2).mean()
        for b in range(4) for i in hidden[b]
    ]).mean()
    torch.testing.assert_close(loss, direct, rtol=1e-4, atol=1e-5)


def test_normalised_patches_and_masked_mse_against_direct_formulas():
    p = torch.randn(2, 5, 12) * 3 + 1
    n = normalised_patches(p)
    torch.testing.assert_close(n.mean(-1), torch.zeros(2, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(n.var(-1), torch.ones(2, 5), atol=1e-4, rtol=0)
    a, b = torch.randn(2, 5, 12), torch.randn(2, 5, 12)
    chosen = torch.tensor([[True, False, True, False, False], [False, False, False, False, True]])
    direct = torch.stack([((a[i, j] - b[i, j]) ** 2).mean() for i in range(2) for j in range(5) if chosen[i, j]]).mean()
    torch.testing.assert_close(masked_mse(a, b, chosen), direct)
    torch.testing.assert_close(masked_mse(a, b), ((a - b) ** 2).mean())


def test_prefix_causal_mask_against_its_definition():
    prefix = torch.tensor([1, 3, 5])
    mask = prefix_causal_mask(prefix, 5)
    for b, k in enumerate(prefix.tolist()):
        for i in range(5):
            for j in range(5):
                assert mask[b, i, j] == (j <= i or (i < k and j < k))
    assert mask[2].all()  # a prefix of the whole sequence: bidirectional


@pytest.mark.parametrize("prefix", [1, 4])
def test_aim_predictions_up_to_t_ignore_the_patches_after_t(prefix):
    torch.manual_seed(0)
    method = AIM(vit(), views(), online_probe=False).eval()
    x = torch.randn(2, 3, 16, 16)
    mask = prefix_causal_mask(torch.full((2,), prefix), 16)
    t = 7  # change patches t + 1 .. 15
    patches = patchify(x, 4).clone()
    patches[:, t + 1:] = torch.randn_like(patches[:, t + 1:]) * 5
    before, _ = method.predictions(x, mask)
    after, _ = method.predictions(unpatchify(patches, 4, 16, 16), mask)
    torch.testing.assert_close(before[:, : t + 1], after[:, : t + 1])  # position t predicts patch t + 1
    assert not torch.allclose(before[:, t + 1:], after[:, t + 1:])


def test_aim_loss_leaves_out_the_prefix():
    torch.manual_seed(0)
    method = AIM(vit(), views(), online_probe=False)
    method.train()
    images = torch.randint(0, 256, (3, 3, 16, 16), dtype=torch.uint8)
    loss, _ = method.ssl_step(images)
    g = method.step_generator()
    x = method.view(0, images, g)
    mask = method.attention(3, g, x.device)
    prefix = mask[:, 0].sum(1)
    pred, _ = method.predictions(x, mask)
    target = normalised_patches(patchify(x, 4)[:, 1:])
    direct = torch.stack([((pred[b, t] - target[b, t]) ** 2).mean() for b in range(3) for t in range(15)
                          if t + 1 >= prefix[b]]).mean()
    torch.testing.assert_close(loss, direct, rtol=1e-4, atol=1e-5)
    assert (prefix >= 1).all() and (prefix <= 15).all()


def test_byol_trains_and_probes_on_the_vit_unchanged(tmp_path):
    # MAE, AIM and SimCLR on the ViT run end to end in notebooks/05_grid.ipynb (tests/test_notebooks.py).
    result = run_cli("train", "method=byol", "model=vit_nano", *TINY, f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "results.json").exists() and (tmp_path / "checkpoints" / "last.ckpt").exists()
