import pytest
import torch

import torch.nn.functional as F

from ssl_zoo.errors import UserError
from ssl_zoo.infer import decode
from ssl_zoo.nn import transformer
from ssl_zoo.infer.decode import generate, sample_next
from ssl_zoo.nn.kv_cache import StaticCache
from ssl_zoo.nn.transformer import Transformer, TransformerConfig, attention


def gpt(causal=True, **kw):
    torch.manual_seed(0)
    return Transformer(TransformerConfig(vocab_size=50, block_size=32, n_layer=2, n_head=2, n_embd=32, causal=causal, **kw)).eval()


def test_causal_outputs_up_to_t_ignore_later_tokens():
    model = gpt()
    ids = torch.randint(0, 50, (2, 20))
    changed = ids.clone()
    changed[:, 12:] = torch.randint(0, 50, (2, 8))
    a, b = model(ids), model(changed)
    torch.testing.assert_close(a[:, :12], b[:, :12])
    assert not torch.allclose(a[:, 12:], b[:, 12:])


def test_bidirectional_outputs_see_later_tokens():
    model = gpt(causal=False)
    ids = torch.randint(0, 50, (1, 10))
    changed = ids.clone()
    changed[:, -1] = (ids[:, -1] + 1) % 50
    assert not torch.allclose(model(ids)[:, 0], model(changed)[:, 0])


def test_padding_mask_hides_padded_keys():
    model = gpt(causal=False)
    ids = torch.randint(0, 50, (1, 10))
    padded = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], dim=1)
    mask = torch.cat([torch.ones(1, 10, dtype=torch.bool), torch.zeros(1, 4, dtype=torch.bool)], dim=1)
    torch.testing.assert_close(model(padded, key_padding_mask=mask)[:, :10], model(ids), atol=1e-5, rtol=1e-5)


def test_cached_forward_equals_full_forward_and_writes_in_place():
    model = gpt()
    ids = torch.randint(0, 50, (2, 16))
    cache = StaticCache(2, 32)
    hidden = model(ids[:, :9], cache=cache)
    keys = cache.keys[0]
    rest = model(ids[:, 9:], cache=cache)  # several new tokens at once over a cache
    torch.testing.assert_close(torch.cat([hidden, rest], dim=1), model(ids), atol=1e-5, rtol=1e-5)
    assert cache.keys[0] is keys and keys.shape == (2, 2, 32, 16) and cache.lengths.tolist() == [16, 16]


@pytest.mark.parametrize("fixed_shapes", [False, True])  # True: attention over the whole capacity, masked (what compile needs)
def test_rows_of_a_cache_continue_from_their_own_lengths(fixed_shapes):
    model = gpt()
    a, b = torch.randint(0, 50, (1, 12)), torch.randint(0, 50, (1, 7))
    cache = StaticCache(2, 32, fixed_shapes=fixed_shapes)
    model(torch.cat([a[:, :10], torch.cat([b[:, :5], torch.zeros(1, 5, dtype=torch.long)], 1)]), cache=cache)
    cache.lengths = torch.tensor([10, 5])  # row 1's padding stays in the cache, never seen, then overwritten
    step = model(torch.cat([a[:, 10:12], b[:, 5:7]]), cache=cache)  # positions 10, 11 and 5, 6
    torch.testing.assert_close(step[0], model(a)[0, 10:], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(step[1], model(b)[0, 5:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("new_tokens", [10, 40])  # within the block, and past it (sliding window)
def test_greedy_generation_with_and_without_cache_is_identical(new_tokens):
    model = gpt()
    prompt = torch.randint(0, 50, (3, 5))
    with_cache = torch.cat(list(generate(model, prompt, new_tokens, temperature=0)), dim=1)
    without = torch.cat(list(generate(model, prompt, new_tokens, temperature=0, use_cache=False)), dim=1)
    assert with_cache.shape == (3, new_tokens)
    assert torch.equal(with_cache, without)


@pytest.mark.parametrize("new_tokens", [8, 30])  # the longest prompt (20) passes block_size (32) in the second
def test_a_ragged_batch_decodes_as_each_prompt_alone_without_a_cache(new_tokens):
    model = gpt()
    torch.manual_seed(1)
    prompts = [torch.randint(0, 50, (n,)).tolist() for n in (3, 20, 9, 1)]
    batched = torch.cat(list(generate(model, prompts, new_tokens, temperature=0)), dim=1)
    for row, prompt in zip(batched.tolist(), prompts):
        alone = torch.cat(list(generate(model, torch.tensor([prompt]), new_tokens, temperature=0, use_cache=False)), dim=1)
        assert row == alone[0].tolist()


@pytest.fixture
def quick_compile(monkeypatch):
    """generate(compile=True) without max_autotune's search among GEMMs (half the compile time; the
    choice of kernel is inductor's, the cache and the graphs' lifetime ours), compiled afresh."""
    options = {k: v for k, v in decode.CPU_COMPILE_OPTIONS.items() if "autotune" not in k}
    monkeypatch.setattr(decode, "CPU_COMPILE_OPTIONS", options)
    decode.compiled_next_logits.cache_clear()
    yield
    decode.compiled_next_logits.cache_clear()


def decisive_gpt(seed: int) -> Transformer:
    """A small GPT whose next tokens are clear choices that depend on the context (as a trained
    model's): rounding cannot turn a near tie, and a step that misread the cache would show."""
    torch.manual_seed(seed)
    model = Transformer(TransformerConfig(vocab_size=50, block_size=32, n_layer=2, n_head=2, n_embd=32, causal=True,
                                          tie_weights=False)).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(40)
    return model


def test_compiled_decoding_writes_what_eager_decoding_writes_and_follows_new_weights(quick_compile):
    model = decisive_gpt(0)
    torch.manual_seed(1)
    prompts = [torch.randint(0, 50, (n,)).tolist() for n in (3, 20, 9, 1)]  # 20 + 16 passes block_size (32)
    for weights in (None, decisive_gpt(1).state_dict()):  # then other weights, loaded in place into the same model
        if weights is not None:
            model.load_state_dict(weights)
        eager = torch.cat(list(generate(model, prompts, 16, temperature=0)), dim=1)
        compiled = torch.cat(list(generate(model, prompts, 16, temperature=0, compile=True)), dim=1)
        assert torch.equal(compiled, eager)
        assert len({tuple(row) for row in eager[:, :8].tolist()}) == 4 and len(set(eager[0].tolist())) > 3  # varied text


def test_compile_without_a_cpp_compiler_is_refused_in_one_line(monkeypatch, quick_compile):
    import torch._inductor.config

    monkeypatch.setattr(torch._inductor.config.cpp, "cxx", (None, "/nonexistent/g++"))  # what $CXX=... sets
    with pytest.raises(UserError, match=r"compile=true needs a working C\+\+ compiler .*leave compile=false"):
        list(generate(gpt(), [[1, 2, 3]], 4, temperature=0, compile=True))


def test_a_seeded_stream_samples_the_same_tokens_alone_and_in_a_batch():
    model = gpt()
    prompts = [[1, 2, 3], [4] * 11, [5, 6]]
    seeds = [7, 8, 9]
    batched = torch.cat(list(generate(model, prompts, 12, temperature=1.0, top_k=20,
                                      generator=[torch.Generator().manual_seed(s) for s in seeds])), dim=1)
    for row, prompt, seed in zip(batched.tolist(), prompts, seeds):
        alone = generate(model, [prompt], 12, temperature=1.0, top_k=20, generator=torch.Generator().manual_seed(seed))
        assert row == torch.cat(list(alone), dim=1)[0].tolist()


def masks(t: int, keys: int) -> dict:
    """The masks the transformer gives attention (bool, True = may attend), a query that sees nothing included."""
    pad = torch.ones(3, keys, dtype=torch.bool)
    pad[1, keys // 2:] = False
    pad[2] = False  # an all-padding row: SDPA answers zeros
    prefix = torch.ones(t, keys, dtype=torch.bool).tril()
    prefix[:, :3] = True  # AIM's prefix-causal mask
    return {"causal": dict(is_causal=True), "padding": dict(mask=pad[:, None, None, :]),
            "prefix": dict(mask=prefix.expand(3, t, keys)[:, None]), "none": {}}


@pytest.mark.parametrize("keys", [40, transformer.EXPLICIT_MAX_KEYS + 8])  # the explicit kernel, and SDPA past its range
@pytest.mark.parametrize("case", ["causal", "padding", "prefix", "none"])
def test_attention_in_bf16_on_the_cpu_is_sdpa_in_fp32_to_bf16_rounding(case, keys, monkeypatch):
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 2, keys, 16) for _ in range(3))
    settings = masks(keys, keys)[case]
    expected = F.scaled_dot_product_attention(*(x.bfloat16().float() for x in (q, k, v)), attn_mask=settings.get("mask"),
                                              is_causal=settings.get("is_causal", False))
    inputs = [x.bfloat16().requires_grad_() for x in (q, k, v)]
    if keys <= transformer.EXPLICIT_MAX_KEYS:  # the explicit kernel computes it, not SDPA
        monkeypatch.setattr(transformer.F, "scaled_dot_product_attention", lambda *a, **kw: pytest.fail("SDPA ran"))
    out = attention(*inputs, **settings)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, atol=3e-2, rtol=3e-2)
    out.float().square().sum().backward()
    assert all(torch.isfinite(x.grad).all() for x in inputs)
    if case == "padding":
        assert not out[2].any() and not inputs[0].grad[2].any()  # nothing to see: zeros, and no gradient


def test_a_causal_model_given_an_attention_mask_applies_both_on_every_kernel():
    model = gpt()
    ids = torch.randint(0, 50, (2, 12))
    everything = torch.ones(2, 12, 12, dtype=torch.bool)
    torch.testing.assert_close(model(ids, attn_mask=everything), model(ids))  # still causal (SDPA refused both before)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        in_bf16 = model(ids, attn_mask=everything)
    torch.testing.assert_close(in_bf16.float(), model(ids), atol=0.1, rtol=0.1)


def test_bf16_weights_decode_a_ragged_batch_as_the_full_forward_computes_each_prompt():
    model = gpt().to(torch.bfloat16)
    prompts = [torch.randint(0, 50, (n,)) for n in (12, 5, 9)]
    cache = StaticCache(3, 32)
    ids = torch.zeros(3, 12, dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, : len(p)] = p
    model(ids, cache=cache)
    cache.lengths = torch.tensor([len(p) for p in prompts])
    new = torch.randint(0, 50, (3, 1))
    step = model(new, cache=cache)[:, 0]  # one token per row, each at its own position
    assert cache.keys[0].dtype == torch.float32 and step.dtype == torch.bfloat16  # on a CPU the cache keeps fp32
    for i, p in enumerate(prompts):
        full = model(torch.cat([p, new[i]])[None])[0, -1]
        torch.testing.assert_close(step[i].float(), full.float(), atol=5e-2, rtol=5e-2)


def test_weight_tying_shares_the_embedding():
    model = gpt()
    assert model.lm_head.weight is model.tok_emb.weight
    assert gpt(tie_weights=False).lm_head.weight is not gpt(tie_weights=False).tok_emb.weight


def test_top_k_and_top_p_sample_only_allowed_tokens():
    logits = torch.tensor([[4.0, 3.0, 2.0, -10.0, -10.0]]).repeat(200, 1)
    g = torch.Generator().manual_seed(0)
    assert set(sample_next(logits, 1.0, top_k=2, generator=g).flatten().tolist()) <= {0, 1}
    # probabilities about 0.665, 0.245, 0.09: top_p 0.8 keeps the first two
    assert set(sample_next(logits, 1.0, top_p=0.8, generator=g).flatten().tolist()) == {0, 1}
    assert sample_next(logits, 0.0).flatten().tolist() == [0] * 200


def test_vector_inputs_for_speech():
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(input_dim=80, block_size=64, n_layer=2, n_head=4, n_embd=32, causal=False))
    layers = model(torch.randn(2, 50, 80), all_layers=True)
    assert len(layers) == 3 and layers[-1].shape == (2, 50, 32)


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="exactly one of"):
        TransformerConfig()
    with pytest.raises(ValueError, match="multiple of n_head"):
        TransformerConfig(vocab_size=10, n_embd=30, n_head=4)


def test_rows_of_a_cache_read_as_a_view_or_gathered_give_the_same_outputs():
    model = gpt()
    prompts, new = torch.randint(0, 50, (2, 9)), torch.randint(0, 50, (2, 1))
    outputs = []
    for rows in ([1, 2], [3, 0]):  # consecutive: a view of the cache; not: gathered at every layer
        cache = StaticCache(4, 32)
        for row, prompt in zip(rows, prompts):
            model(prompt[None], cache=cache.using([row]))
        outputs.append(model(new, cache=cache.using(rows)))
        assert cache.block == (slice(1, 3) if rows == [1, 2] else None)
        assert cache.lengths[rows].tolist() == [10, 10]
    torch.testing.assert_close(outputs[0], outputs[1])
    torch.testing.assert_close(outputs[0], model(torch.cat([prompts, new], 1))[:, -1:], atol=1e-5, rtol=1e-5)


def test_sampling_draws_tokens_at_their_probabilities_and_each_row_from_its_own_generator():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, float("-inf")]])
    draws = sample_next(logits.repeat(20000, 1), 1.0, generator=torch.Generator().manual_seed(0))[:, 0]
    frequencies = torch.bincount(draws, minlength=5) / len(draws)
    torch.testing.assert_close(frequencies, logits.softmax(-1)[0], atol=0.015, rtol=0)  # and never the -inf token
    rows = torch.randn(3, 30)
    together = sample_next(rows, 0.9, 10, 0.95, [torch.Generator().manual_seed(s) for s in (1, 2, 3)])
    alone = [sample_next(row[None], 0.9, 10, 0.95, torch.Generator().manual_seed(s)) for row, s in zip(rows, (1, 2, 3))]
    assert together.tolist() == torch.cat(alone).tolist()
