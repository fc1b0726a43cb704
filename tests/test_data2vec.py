"""data2vec: its targets are the average of the teacher's top-K blocks' feed-forward outputs (each
normalised) at the masked positions only, the teacher gets no gradient, each modality's class takes its
own settings only (and a checkpoint of the one-config format loads as its modality's class), and
training and probing run from the command line."""

import pytest
import torch

from conftest import TINY, run_cli
from ssl_zoo.data.tokenizer import MASK_ID
from ssl_zoo.losses import data2vec_targets, instance_norm
from ssl_zoo.masking import block_patches
from ssl_zoo.methods.data2vec import Data2VecImage, Data2VecSpeech, Data2VecText
from ssl_zoo.nn.transformer import Transformer
from ssl_zoo.nn.vit import ViT
from ssl_zoo.views import ImageViews

VIEWS = ImageViews(16, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), jitter_prob=0.0, grayscale_prob=0.0)


def text_method(**settings):
    torch.manual_seed(0)
    backbone = Transformer(vocab_size=50, block_size=16, n_layer=3, n_head=2, n_embd=16)
    return Data2VecText(backbone, top_k=2, online_probe=False, **settings)


def test_each_modality_has_its_class_and_takes_its_own_settings_only():
    speech = Data2VecSpeech(Transformer(input_dim=8, block_size=20, n_layer=2, n_head=2, n_embd=16), top_k=2, online_probe=False)
    image = Data2VecImage(ViT(16, patch_size=4, n_layer=2, n_head=2, n_embd=16), views=VIEWS, top_k=2, online_probe=False)
    assert [(m.name, m.modality) for m in (text_method(), speech, image)] == [("data2vec", "text"), ("data2vec", "speech"), ("data2vec", "image")]
    with pytest.raises(TypeError, match="image_block"):  # another modality's setting is not silently dropped
        text_method(image_block=2)


def test_targets_are_the_top_k_layers_each_normalised_then_averaged():
    torch.manual_seed(0)
    layers = [torch.randn(2, 6, 4) * (i + 1) + i for i in range(4)]
    real = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    targets = data2vec_targets(layers, 2, real)
    for b in range(2):
        n = int(real[b].sum())
        direct = 0
        for h in layers[-2:]:
            x = h[b, :n]
            direct = direct + (x - x.mean(0)) / (x.var(0, unbiased=False) + 1e-5).sqrt() / 2
        torch.testing.assert_close(targets[b, :n], direct, rtol=1e-4, atol=1e-5)
    normed = instance_norm(layers[0])
    torch.testing.assert_close(normed.mean(1), torch.zeros(2, 4), atol=1e-5, rtol=0)
    # Text and images: each layer normalised over the channels of each position instead (no parameters).
    by_position = data2vec_targets(layers, 2, norm="layer")
    direct = sum((h - h.mean(-1, keepdim=True)) / (h.var(-1, unbiased=False, keepdim=True) + 1e-5).sqrt() for h in layers[-2:]) / 2
    torch.testing.assert_close(by_position, direct, rtol=1e-4, atol=1e-5)
    assert [m.target_norm for m in (Data2VecText, Data2VecSpeech, Data2VecImage)] == ["layer", "instance", "layer"]  # the paper's


def test_centred_targets_leave_nothing_for_the_position_alone_to_predict():
    torch.manual_seed(0)
    position = torch.randn(1, 6, 4) * 3  # what every sequence shares at each position: the collapse's shortcut
    layers = [torch.randn(64, 6, 4) + position for _ in range(3)]
    plain, centred = data2vec_targets(layers, 2), data2vec_targets(layers, 2, centre_positions=True)
    # The best guess from the position alone (its mean over the batch) explains most of the plain
    # targets and none of the centred ones; what each sequence has of its own is kept.
    explained = lambda t: 1 - (t - t.mean(0)).pow(2).mean() / t.pow(2).mean()  # noqa: E731 (targets are zero-mean per channel)
    assert explained(plain) > 0.8 and abs(explained(centred)) < 1e-5
    torch.testing.assert_close(centred, plain - plain.mean(0, keepdim=True))
    # Padded rows of a position neither take part in its centre nor move the real rows' targets.
    real = torch.ones(64, 6, dtype=torch.bool)
    real[32:, 3:] = False
    padded = [h.clone() for h in layers]
    for h in padded:
        h[32:, 3:] = 1e3
    with_pad = data2vec_targets(padded, 2, real, centre_positions=True)
    first_rows = data2vec_targets(padded, 2, real)[:32, 3:]
    torch.testing.assert_close(with_pad[:32, 3:], first_rows - first_rows.mean(0))


@pytest.mark.parametrize("centre", [False, True])
def test_the_loss_is_at_the_masked_positions_only_and_the_teacher_gets_no_gradient(centre):
    method = text_method(centre_positions=centre)
    method.train()
    ids = torch.randint(5, 50, (16, 17))
    loss, _ = method.ssl_step(ids)
    # The same step by hand: BERT's masking from the same draws, the teacher's top-2 block outputs.
    from ssl_zoo.losses import IGNORE
    from ssl_zoo.masking import mask_tokens

    inputs, targets = mask_tokens(ids[:, :16], method.step_generator(), 50, 0.15)
    chosen = (targets != IGNORE) & (inputs == MASK_ID)  # fairseq scores the [MASK] positions, not the kept or randomised
    assert ((targets != IGNORE) & ~chosen).any()  # the draw has some of those: the test can tell
    student = method.regression_head(method.backbone(inputs))
    teacher = data2vec_targets(feed_forward_outputs(method.teacher, ids[:, :16]), 2, norm="layer")
    if centre:  # each position's mean over the 16 sequences taken away
        teacher = teacher - torch.stack([teacher[b] for b in range(16)]).mean(0)
    direct = torch.stack([((student[b, t] - teacher[b, t]) ** 2).mean() for b in range(16) for t in range(16) if chosen[b, t]])
    torch.testing.assert_close(loss, direct.mean(), rtol=1e-4, atol=1e-6)
    loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in method.teacher.parameters())
    assert not method.teacher.training  # the targets are read without dropout, as the reference's
    assert all(p.grad is not None for p in method.backbone.blocks.parameters())


def feed_forward_outputs(model: Transformer, inputs) -> list[torch.Tensor]:
    """Each block's feed-forward output, before the residual, caught by hooks on the blocks' MLPs."""
    caught = []
    hooks = [block.mlp.register_forward_hook(lambda module, args, out: caught.append(out)) for block in model.blocks]
    try:
        model(inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return caught


def test_the_teacher_gives_each_blocks_feed_forward_output_before_the_residual():
    torch.manual_seed(0)
    model = Transformer(vocab_size=50, block_size=16, n_layer=3, n_head=2, n_embd=16, causal=False)
    ids = torch.randint(5, 50, (2, 16))
    ffns, layers = model(ids, ffn_outputs=True), model(ids, all_layers=True)
    assert len(ffns) == 3
    for got, want in zip(ffns, feed_forward_outputs(model, ids)):
        torch.testing.assert_close(got, want)
    # Not the residual stream: that carries the embeddings through every block.
    assert not torch.allclose(ffns[0], layers[1], atol=1e-3)


def test_the_image_student_reads_a_mask_patch_where_blocks_are_hidden():
    g = torch.Generator().manual_seed(0)
    hidden = block_patches(16, 8, 2, 0.5, g)  # 8 x 8 patches in 2 x 2 blocks
    assert hidden.shape == (16, 64)
    grid = hidden.view(16, 4, 2, 4, 2)
    assert (grid == grid[:, :, :1, :, :1]).all()  # every block hidden or shown whole
    assert (hidden.float().mean(1) == 0.5).all()  # 8 of the 16 blocks, for each image
    odd = block_patches(4, 5, 2, 0.5, g)  # blocks that hang over the edge are cut
    assert odd.shape == (4, 25)


def test_data2vec_trains_and_probes_on_images(tmp_path):
    # Text and speech run end to end in notebooks/05_grid.ipynb (tests/test_notebooks.py).
    result = run_cli("train", "method=data2vec_image", "model=vit_nano", "method.top_k=2", *TINY,
                     f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()
    # The same run as a checkpoint of the earlier format (one config for every modality, the encoder
    # choosing the class, every modality's settings in it) loads as the image class, weights intact.
    from ssl_zoo.checkpoint import CONFIG_KEY, FORMAT_KEY, load_method, read_checkpoint

    ckpt = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    ckpt[FORMAT_KEY] = 2
    ckpt[CONFIG_KEY]["method"].update(_target_="ssl_zoo.methods.data2vec.Data2Vec", select_prob=0.15, centre_positions=False,
                                      speech_mask_prob=0.5, speech_span=10, probe_layer="weighted")
    torch.save(ckpt, tmp_path / "old.ckpt")
    old, cfg = load_method(tmp_path / "old.ckpt")
    new, _ = load_method(tmp_path / "checkpoints" / "last.ckpt")
    assert type(old) is Data2VecImage and "select_prob" not in cfg.method
    assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), new.state_dict().values()))
