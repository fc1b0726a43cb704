"""Text: tokenizers, the memory-mapped corpus, BERT's masking, the token losses."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssl_zoo.data.text import PythonStdlib, TextFile
from ssl_zoo.data.tokenizer import MASK_ID, NUM_SPECIAL, PAD_ID, SPECIAL_TOKENS, TextTokenizer
from ssl_zoo.errors import UserError
from ssl_zoo.losses import IGNORE, token_cross_entropy
from ssl_zoo.masking import mask_tokens

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 40


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_tokenizer_round_trip_and_fixed_special_ids(kind):
    tok = TextTokenizer.train(kind, [TEXT], vocab_size=300)
    sample = "Before we proceed, speak.\nAll: hear me"
    assert tok.decode(tok.encode(sample)) == sample
    for i, token in enumerate(SPECIAL_TOKENS):
        assert tok.hf.token_to_id(token) == i
    ids = tok.encode("hear [MASK] speak")
    assert ids.count(MASK_ID) == 1  # "[MASK]" is one token, never spelled out
    again = TextTokenizer.from_str(tok.to_str())  # as stored in a checkpoint
    assert again.kind == kind and again.encode(sample) == tok.encode(sample)


def test_bpe_encodes_any_text_and_char_refuses_unseen_characters():
    bpe = TextTokenizer.train("bpe", [TEXT], vocab_size=300)
    assert bpe.decode(bpe.encode("naïve ☃ zebra")) == "naïve ☃ zebra"  # byte-level: nothing is unknown
    char = TextTokenizer.train("char", [TEXT])
    with pytest.raises(UserError, match=r"never saw: 'x☃'"):
        char.encode("Speak ☃ x [MASK]", strict=True)


def test_text_file_tokenized_into_windows_over_a_memory_map(tmp_path):
    path = tmp_path / "input.txt"
    path.write_text(TEXT)
    dm = TextFile(path=str(path), tokenizer="char", block_size=16, val_fraction=0.1, cache_dir=str(tmp_path / "cache"), batch_size=4)
    dm.setup()
    assert isinstance(dm.train_ids, np.memmap)
    assert len(dm.train_ids) + len(dm.val_ids) == len(TEXT)
    assert dm.tokenizer.decode(np.concatenate([dm.train_ids, dm.val_ids])) == TEXT
    windows, labels = dm.pretrain_dataset().__getitems__([0, 3, 7])
    assert windows.shape == (3, 17) and windows.dtype == torch.int64 and (labels == -1).all()
    for row in windows:
        assert dm.tokenizer.decode(row) in TEXT
    val = next(iter(dm.val_dataloader()))[0]
    assert dm.tokenizer.decode(val[0]) in TEXT[-len(dm.val_ids):]
    assert dm.encoder_settings() == {"vocab_size": dm.tokenizer.vocab_size, "block_size": 16}
    assert dm.probe_splits() is None  # plain text has no labels


def test_text_file_missing_empty_and_glob(tmp_path):
    with pytest.raises(UserError, match="no text file at data.path="):
        TextFile(path=str(tmp_path / "nope.txt"), cache_dir=str(tmp_path)).setup()
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(UserError, match="are empty"):
        TextFile(path=str(tmp_path / "empty.txt"), cache_dir=str(tmp_path)).setup()
    (tmp_path / "a.txt").write_text(TEXT)
    (tmp_path / "b.txt").write_text(TEXT.upper())
    dm = TextFile(path=str(tmp_path / "[ab].txt"), block_size=16, cache_dir=str(tmp_path / "cache"))
    dm.setup()
    assert len(dm.train_ids) + len(dm.val_ids) == 2 * len(TEXT)


def test_text_that_is_not_utf8_or_looks_binary_is_refused_in_one_line_or_read_as_asked(tmp_path):
    from ssl_zoo.data.text import read_chunks

    latin = tmp_path / "latin1.txt"
    latin.write_bytes(("x" * 3000 + "caf\u00e9\n").encode("latin-1"))
    with pytest.raises(UserError, match=r"latin1\.txt is not UTF-8 text \(byte 3,003 is 0xe9\); convert it to UTF-8, or set "
                                        r"data.encoding_errors=replace"):
        list(read_chunks(latin, size=1024))
    assert "".join(read_chunks(latin, size=1024, errors="replace")).endswith("caf\ufffd\n")
    split = tmp_path / "split.txt"  # a character cut by a chunk edge is still read whole
    split.write_bytes(("a" * 1023 + "\u00e9\n").encode("utf-8"))
    assert "".join(read_chunks(split, size=1024)) == "a" * 1023 + "\u00e9\n"
    binary = tmp_path / "model.txt"
    binary.write_bytes(b"PK\x03\x04\x00\x00 not text")
    with pytest.raises(UserError, match=r"model\.txt looks binary \(a NUL byte in its first 8 kB\), not text"):
        TextFile(path=str(binary)).files()
    with pytest.raises(UserError, match="data.encoding_errors must be strict or replace, got 'ignore'"):
        TextFile(path=str(latin), encoding_errors="ignore")


def test_python_stdlib_probe_has_ten_packages_of_fixed_length_snippets(tmp_path):
    dm = PythonStdlib(max_chars=100_000, tokenizer="char", block_size=64, probe_length=32,
                      probe_train_per_class=20, probe_test_per_class=5, cache_dir=str(tmp_path))
    dm.setup()
    splits = dm.probe_splits()
    assert splits.num_classes == 10 and splits.task == "stdlib_package"
    x, y = splits.train.inputs, splits.train.labels
    assert x.shape == (200, 32) and sorted(y.unique().tolist()) == list(range(10))
    assert splits.test.inputs.shape == (50, 32)
    assert dm.tokenizer.decode(x[y == dm._probe_labels.index("json")][0]) in (dm._probe_text["json"][0])


def test_masking_proportions_and_targets():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(NUM_SPECIAL, 500, (64, 512), generator=g)
    ids[:, 0] = PAD_ID  # special tokens are never selected
    inputs, targets = mask_tokens(ids, g, vocab_size=500)
    selected = targets != IGNORE
    ordinary = ids >= NUM_SPECIAL
    assert not selected[:, 0].any()
    assert selected.sum() / ordinary.sum() == pytest.approx(0.15, abs=0.005)
    assert (targets[selected] == ids[selected]).all()  # the label is the original token
    assert (inputs[~selected] == ids[~selected]).all()  # nothing else is touched
    masked = (inputs == MASK_ID) & selected
    changed = (inputs != ids) & (inputs != MASK_ID) & selected
    kept = (inputs == ids) & selected
    n = selected.sum().item()
    assert masked.sum().item() / n == pytest.approx(0.8, abs=0.02)
    # a random replacement may draw the same token (1 in ~500): counted as kept
    assert changed.sum().item() / n == pytest.approx(0.1, abs=0.015)
    assert kept.sum().item() / n == pytest.approx(0.1, abs=0.015)
    assert (inputs[changed] >= NUM_SPECIAL).all()


def test_token_cross_entropy_averages_over_labelled_positions_only():
    logits = torch.randn(2, 5, 11)
    targets = torch.tensor([[1, IGNORE, 3, IGNORE, 4], [IGNORE, IGNORE, 10, 0, IGNORE]])
    keep = targets != IGNORE
    direct = -(logits.log_softmax(-1)[keep].gather(1, targets[keep][:, None])).mean()
    assert token_cross_entropy(logits, targets).item() == pytest.approx(direct.item(), rel=1e-6)
    assert token_cross_entropy(logits, targets.clamp_min(0)).item() == pytest.approx(
        F.cross_entropy(logits.reshape(-1, 11), targets.clamp_min(0).reshape(-1)).item(), rel=1e-6)


def tiny_transformer(causal):
    from ssl_zoo.nn.transformer import Transformer

    torch.manual_seed(0)
    return Transformer(vocab_size=40, block_size=16, n_layer=2, n_head=2, n_embd=16, causal=causal)


def test_gpt_loss_predicts_each_next_token():
    from ssl_zoo.methods.gpt import GPT

    gpt = GPT(tiny_transformer(causal=True))
    ids = torch.randint(NUM_SPECIAL, 40, (3, 17))
    loss, features = gpt.ssl_step(ids)
    logits = gpt.backbone.logits(gpt.backbone(ids[:, :-1]))  # (3, 16, 40)
    direct = -logits.log_softmax(-1).gather(-1, ids[:, 1:, None]).mean()
    assert loss.item() == pytest.approx(direct.item(), rel=1e-5)
    assert features.shape == (3, 16)


def test_bert_loss_covers_the_selected_tokens_only():
    from ssl_zoo.methods.bert import BERT

    bert = BERT(tiny_transformer(causal=False))
    ids = torch.randint(NUM_SPECIAL, 40, (4, 17))
    loss, logits, targets, _ = bert.masked_step(ids, torch.Generator().manual_seed(3))
    inputs, all_targets = mask_tokens(ids[:, :16], torch.Generator().manual_seed(3), 40)
    full = bert.backbone.logits(bert.backbone(inputs))  # (4, 16, 40): every position
    chosen = all_targets != IGNORE
    direct = F.cross_entropy(full[chosen], all_targets[chosen])
    assert loss.item() == pytest.approx(direct.item(), rel=1e-5)
    assert torch.equal(targets, all_targets[chosen]) and logits.shape == (chosen.sum(), 40)
    # the same generator draws the same masks: the same loss
    assert bert.masked_step(ids, torch.Generator().manual_seed(3))[0].item() == pytest.approx(loss.item())


@pytest.mark.parametrize("method, needs", [("gpt", True), ("bert", False)])
def test_a_text_method_sets_its_own_attention_and_refuses_the_other(method, needs):
    from ssl_zoo.methods.bert import BERT
    from ssl_zoo.methods.gpt import GPT
    from ssl_zoo.nn.transformer import Transformer

    method_class = {"gpt": GPT, "bert": BERT}[method]
    unset = Transformer(vocab_size=40, block_size=16, n_layer=1, n_head=2, n_embd=16)  # as model= builds it
    assert method_class(unset).backbone.cfg.causal is needs
    with pytest.raises(UserError, match=f"method={method} needs {'causal' if needs else 'bidirectional'} attention, "
                                        f"but model.causal={str(not needs).lower()}; drop model.causal"):
        method_class(tiny_transformer(causal=not needs))


def test_a_transformer_without_an_attention_mode_refuses_to_run():
    from ssl_zoo.nn.transformer import Transformer

    with pytest.raises(ValueError, match="the attention is not set"):
        Transformer(vocab_size=40, block_size=16, n_layer=1, n_head=2, n_embd=16)(torch.zeros(1, 4, dtype=torch.long))


def test_the_in_context_score_is_the_late_tokens_loss_minus_the_early_ones():
    from ssl_zoo.methods.gpt import GPT

    gpt = GPT(tiny_transformer(causal=True)).eval()  # block_size 16: early = position 1, late = positions 14-15
    batches = [torch.randint(NUM_SPECIAL, 40, (3, 17)) for _ in range(2)]
    with torch.no_grad():
        for i, ids in enumerate(batches):
            gpt.validation_step((ids, None), i)
        losses = torch.cat([F.cross_entropy(gpt.backbone.logits(gpt.backbone(ids[:, :-1])).transpose(1, 2), ids[:, 1:],
                                            reduction="none") for ids in batches])  # (6, 16)
    direct = losses[:, gpt.late].mean() - losses[:, gpt.early].mean()
    assert (gpt.early, gpt.late) == (slice(1, 2), slice(14, 15))
    assert (gpt.val_late.compute() - gpt.val_early.compute()).item() == pytest.approx(direct.item(), abs=1e-5)
