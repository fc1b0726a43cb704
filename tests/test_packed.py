import copy

import pytest
import torch
from torch import nn

from ssl_zoo.infer import packed
from ssl_zoo.infer.decode import generate
from ssl_zoo.infer.packed import PackedLinear, can_pack, pack_linears, packs
from ssl_zoo.nn.transformer import Transformer, TransformerConfig

pytestmark = pytest.mark.skipif(not can_pack(), reason="this torch has no oneDNN prepacked linear")
needs_bf16 = pytest.mark.skipif(can_pack() and not packs(torch.bfloat16), reason="no oneDNN bf16 path on this CPU")


def gpt():
    torch.manual_seed(0)
    return Transformer(TransformerConfig(vocab_size=50, block_size=32, n_layer=2, n_head=2, n_embd=32, causal=True)).eval()


@needs_bf16
def test_a_packed_bf16_model_computes_what_it_computed_before_and_keeps_its_state_dict():
    model = gpt().to(torch.bfloat16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ids = torch.randint(0, 50, (3, 20))
    with torch.no_grad():
        expected = model.logits(model(ids))
        pack_linears(model)
        got = model.logits(model(ids))
    assert all(type(m) is PackedLinear for m in model.modules() if isinstance(m, nn.Linear))
    assert model.blocks[0].attn.qkv._packed is not None  # the packed product ran
    torch.testing.assert_close(got, expected, atol=1e-2, rtol=1e-2)  # bit for bit on the machines measured (docs)
    assert model.lm_head.weight is model.tok_emb.weight  # tying kept
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    tokens = lambda m: torch.cat(list(generate(m, [[1, 2, 3], [4, 5]], 8, temperature=0)), 1)  # noqa: E731
    assert torch.equal(tokens(copy.deepcopy(model)), tokens(model))  # a copy packs its own


def test_a_large_fp32_weight_is_packed_a_small_one_is_not_and_both_compute_the_product():
    torch.manual_seed(0)
    big, small = nn.Linear(1024, 512), nn.Linear(64, 64)  # 524k weights: over FP32_MIN_WEIGHTS; 4k: under
    assert big.weight.numel() >= packed.FP32_MIN_WEIGHTS > small.weight.numel()
    expected = [big(torch.ones(4, 1024)).detach(), small(torch.ones(4, 64)).detach()]
    pack_linears(big), pack_linears(small)
    with torch.no_grad():
        got = [big(torch.ones(4, 1024)), small(torch.ones(4, 64))]
    assert big._packed is not None and small._packed is None
    torch.testing.assert_close(got[0], expected[0], atol=1e-5, rtol=1e-5)
    assert torch.equal(got[1], expected[1])


def test_with_gradients_it_is_a_linear_and_a_changed_weight_is_packed_again():
    torch.manual_seed(0)
    layer = pack_linears(nn.Sequential(nn.Linear(1024, 512)))[0]
    x = torch.randn(2, 1024)
    layer(x).sum().backward()  # gradients: F.linear, nothing packed
    assert layer.weight.grad is not None and layer._packed is None
    with torch.no_grad():
        first = layer(x)
        layer.weight.mul_(2)  # an in-place change: the packed copy is stale
        torch.testing.assert_close(layer(x) - layer.bias, 2 * (first - layer.bias), atol=1e-4, rtol=1e-4)
        layer.double()  # moved: no packed copy kept; float64 is not packed
        assert layer._packed is None and layer(x.double()).dtype == torch.float64
        layer.float()
        torch.testing.assert_close(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias), atol=1e-5, rtol=1e-5)
    with torch.inference_mode():  # weights made in inference mode have no version to watch: F.linear
        made = pack_linears(nn.Sequential(nn.Linear(1024, 512)))[0]
        assert made(x).shape == (2, 512) and made._packed is None
