import copy
import math

import pytest
import torch

from ssl_zoo.optim import LARS, OptimConfig, build_optimizer, param_groups, warmup_cosine


def test_lars_first_step_scales_the_update_by_the_trust_ratio():
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))  # |w| = 5
    b = torch.nn.Parameter(torch.tensor([1.0]))
    opt = LARS([{"params": [w]}, {"params": [b], "lars_adapt": False}], lr=0.1, weight_decay=0.5, trust=0.01)
    w.grad, b.grad = torch.tensor([1.0, 0.0]), torch.tensor([2.0])
    opt.step()
    update = torch.tensor([1.0, 0.0]) + 0.5 * torch.tensor([3.0, 4.0])  # g + wd w = (2.5, 2)
    expected = torch.tensor([3.0, 4.0]) - 0.1 * (0.01 * 5 / update.norm()) * update
    torch.testing.assert_close(w.detach(), expected)
    torch.testing.assert_close(b.detach(), torch.tensor([1.0 - 0.1 * (2.0 + 0.5 * 1.0)]))  # plain SGD step


def test_biases_and_norms_take_no_weight_decay():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    decay, no_decay = param_groups(model.parameters(), 0.1, exclude_bias_and_norm=True)
    assert [p.ndim for p in decay["params"]] == [2] and no_decay["weight_decay"] == 0.0
    assert len(no_decay["params"]) == 3  # linear bias, BN weight and bias
    opt = build_optimizer(OptimConfig(name="adamw"), [decay, no_decay], lr=1e-3)
    assert isinstance(opt, torch.optim.AdamW) and "lars_adapt" not in opt.param_groups[1]


def test_adamw_on_the_cpu_is_the_fused_kernel_and_steps_as_the_reference_does():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 3))
    twin = copy.deepcopy(model)
    fused = build_optimizer(OptimConfig(name="adamw", weight_decay=0.1), param_groups(model.parameters(), 0.1, True), lr=1e-2)
    reference = torch.optim.AdamW(param_groups(twin.parameters(), 0.1, True), lr=1e-2, foreach=False)
    assert fused.defaults["fused"] is True
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    for _ in range(5):
        for net, opt in ((model, fused), (twin, reference)):
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
            opt.zero_grad()
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    clipped = build_optimizer(OptimConfig(name="adamw"), param_groups(model.parameters(), 0.1, True), lr=1e-2, clipping=True)
    assert not clipped.defaults["fused"]  # Lightning cannot clip the gradients of a fused optimizer under bf16-mixed


def test_a_method_trains_in_bf16_mixed_with_gradient_clipping(corpus):
    """nanoGPT's settings (experiment=gpt_shakespeare_char*): bf16 autocast and clipping at 1.0 (emulated
    bf16 where the CPU has none)."""
    import pytorch_lightning as pl

    from conftest import compose_train, tiny_text
    from ssl_zoo import build

    _, datamodule, method = build.for_training(compose_train(*tiny_text("gpt", corpus, "unused")[1:-1]))
    before = [p.detach().clone() for p in method.backbone.parameters()]
    trainer = pl.Trainer(max_steps=2, precision="bf16-mixed", gradient_clip_val=1.0, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(method, datamodule)
    assert trainer.global_step == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, method.backbone.parameters()))


def test_warmup_then_cosine():
    assert warmup_cosine(0, 10, 110, 0.0) == 0.1
    assert warmup_cosine(9, 10, 110, 0.0) == 1.0
    assert math.isclose(warmup_cosine(60, 10, 110, 0.0), 0.5)
    assert math.isclose(warmup_cosine(110, 10, 110, 0.1), 0.1)


def test_the_linear_scaling_rule_reads_the_batch_size_the_data_hands_over():
    """lr * global batch / 256, the global batch = the datamodule's batch size x devices x accumulation."""
    from types import SimpleNamespace

    from conftest import compose_train
    from ssl_zoo.build import build_method
    from ssl_zoo.data.base import DataInfo

    method = build_method(compose_train("method=simclr", "method.optim.scale_lr=true", "method.optim.lr=0.3"))
    method.use_data(DataInfo(batch_size=64))
    method._trainer = SimpleNamespace(world_size=2, accumulate_grad_batches=4, estimated_stepping_batches=100,
                                      gradient_clip_val=None)
    assert method.configure_optimizers()["optimizer"].defaults["lr"] == pytest.approx(0.3 * 64 * 2 * 4 / 256)
