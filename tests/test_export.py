"""ssl-zoo export: a GPT leaves the zoo as a Hugging Face GPT-2 folder whose logits, tokens and greedy
text are ours, a BERT as a masked LM whose logits and fill-mask candidates are ours, image encoders as
torchvision / timm models and speech encoders as s3prl upstreams with our features; a checkpoint of
another method, or a folder that is not free, is one line."""

import pytest
import torch

from ssl_zoo.checkpoint import load_method
from ssl_zoo.infer.text import SamplingSettings, generate_text
from conftest import one_error_line, run_cli

transformers = pytest.importorskip("transformers")


def export_hf(run, tmp_path_factory, name: str):
    """(the run's method in eval mode, its format=hf export)."""
    run_dir, _ = run
    out = tmp_path_factory.mktemp("export") / name
    result = run_cli("export", f"checkpoint={run_dir}/checkpoints/last.ckpt", "format=hf", f"out={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    method, _ = load_method(run_dir / "checkpoints" / "last.ckpt")
    return method.eval(), out


@pytest.fixture(scope="module")
def exported(gpt_run, tmp_path_factory):
    return export_hf(gpt_run, tmp_path_factory, "gpt2")


def test_transformers_loads_the_export_and_its_logits_are_ours(exported):
    method, out = exported
    theirs = transformers.GPT2LMHeadModel.from_pretrained(out).eval()
    ids = torch.randint(0, method.backbone.cfg.vocab_size, (3, method.backbone.cfg.block_size))
    with torch.no_grad():
        ours = method.backbone.logits(method.backbone(ids))
        assert torch.allclose(theirs(ids).logits, ours, atol=1e-5, rtol=0)


def test_the_tokenizer_and_greedy_text_are_ours(exported):
    method, out = exported
    tokenizer = transformers.PreTrainedTokenizerFast.from_pretrained(out)
    prompt = "the cat sat on"
    assert tokenizer(prompt, add_special_tokens=False)["input_ids"] == method.tokenizer.encode(prompt)
    ours = "".join(generate_text(method, prompt, SamplingSettings(max_new_tokens=12, temperature=0.0)))
    writer = transformers.pipeline("text-generation", model=str(out), tokenizer=tokenizer, device="cpu")
    theirs = writer(prompt, max_new_tokens=12, do_sample=False, return_full_text=False, eos_token_id=None)
    assert theirs[0]["generated_text"] == ours


def test_a_second_export_to_the_same_folder_replaces_the_first_whole(exported, gpt_run):
    _, out = exported
    run_dir, _ = gpt_run
    before = (out / "model.safetensors").read_bytes()
    result = run_cli("export", f"checkpoint={run_dir}/checkpoints/last.ckpt", f"out={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no temporary folder left


def test_a_checkpoint_of_another_modality_or_a_busy_folder_is_refused_in_one_line(bert_run, gpt_run, tmp_path):
    bert_dir, _ = bert_run
    result = run_cli("export", f"checkpoint={bert_dir}/checkpoints/last.ckpt", "format=s3prl", f"out={tmp_path / 'x'}")
    assert "holds a bert model; format=s3prl exports masked_speech or apc or data2vec checkpoints only" in one_error_line(result)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    gpt_dir, _ = gpt_run
    result = run_cli("export", f"checkpoint={gpt_dir}/checkpoints/last.ckpt", f"out={tmp_path / 'busy'}")
    assert "is a folder with other files in it" in one_error_line(result)
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


@pytest.fixture(scope="module")
def exported_bert(bert_run, tmp_path_factory):
    return export_hf(bert_run, tmp_path_factory, "bert")


def test_transformers_loads_the_exported_bert_and_its_logits_are_ours(exported_bert):
    method, out = exported_bert
    theirs = transformers.AutoModelForMaskedLM.from_pretrained(out, trust_remote_code=True).eval()
    model = method.backbone
    ids = torch.randint(0, model.cfg.vocab_size, (3, model.cfg.block_size))
    real = torch.ones_like(ids, dtype=torch.bool)
    real[1, 40:] = False  # a padded row: the padding must be hidden from the real tokens in both
    with torch.no_grad():
        ours = model.logits(model(ids, key_padding_mask=real))
        assert torch.allclose(theirs(ids, attention_mask=real.long()).logits, ours, atol=1e-5, rtol=0)
    assert theirs.get_output_embeddings().weight is theirs.get_input_embeddings().weight  # still tied


def test_the_fill_mask_pipeline_gives_our_candidates(exported_bert):
    from ssl_zoo.data.tokenizer import MASK_ID
    from ssl_zoo.infer.text import fill_masks

    method, out = exported_bert
    text = "the cat [MASK] on the mat"
    ids = method.tokenizer.encode(text)
    with torch.no_grad():
        probs = method.backbone.logits(method.backbone(torch.tensor([ids])))[0, ids.index(MASK_ID)].softmax(-1)
    top = probs.topk(5)
    assert [p for _, p in fill_masks(method, text, top_k=5)[0]] == pytest.approx(top.values.tolist())  # what `ssl-zoo fill` shows
    filler = transformers.pipeline("fill-mask", model=str(out), trust_remote_code=True, device="cpu")
    theirs = filler(text, top_k=5)
    assert [c["token"] for c in theirs] == top.indices.tolist()
    assert [c["score"] for c in theirs] == pytest.approx(top.values.tolist(), abs=1e-5)


def trained_image_encoder(tmp_path, *overrides):
    """A run folder of two training steps on a little of the shapes data."""
    from conftest import TINY

    run = tmp_path / "run"
    result = run_cli("train", *overrides, *TINY, "trainer.max_steps=2", "probe.enabled=false", f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr[-2000:]
    return run


def exported_to(run, fmt: str, out):
    result = run_cli("export", f"checkpoint={run}/checkpoints/last.ckpt", f"format={fmt}", f"out={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    return out


def test_a_resnet_encoder_loads_strictly_into_torchvision_and_timm_and_gives_our_features(tmp_path):
    import json

    import safetensors.torch
    import torchvision

    run = trained_image_encoder(tmp_path, "method=simclr", "model=resnet18")
    out = exported_to(run, "torchvision", tmp_path / "resnet")
    config = json.loads((out / "config.json").read_text())
    assert config["arch"] == "resnet18" and config["cifar_stem"]
    theirs = torchvision.models.resnet18(weights=None)  # rebuilt as config.json says
    theirs.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    theirs.maxpool, theirs.fc = torch.nn.Identity(), torch.nn.Identity()
    theirs.load_state_dict(safetensors.torch.load_file(out / "model.safetensors"), strict=True)
    method, _ = load_method(run / "checkpoints" / "last.ckpt")
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(theirs.eval()(images), method.eval().backbone(images), atol=1e-5)

    timm = pytest.importorskip("timm")
    exported_to(run, "timm", tmp_path / "timm")
    assert json.loads((tmp_path / "timm" / "config.json").read_text())["library"] == "timm"
    theirs = timm.create_model("resnet18", pretrained=False, num_classes=0)  # rebuilt as config.json says
    theirs.conv1, theirs.maxpool = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False), torch.nn.Identity()
    theirs.load_state_dict(safetensors.torch.load_file(tmp_path / "timm" / "model.safetensors"), strict=True)
    with torch.no_grad():
        assert torch.allclose(theirs.eval()(images), method.backbone(images), atol=1e-5)


def test_a_vit_encoder_loads_strictly_into_timm_vision_transformer_and_gives_our_features(tmp_path):
    import functools
    import json

    import safetensors.torch

    timm = pytest.importorskip("timm")
    run = trained_image_encoder(tmp_path, "method=mae", "model=vit_nano")
    out = exported_to(run, "timm", tmp_path / "vit")
    config = json.loads((out / "config.json").read_text())
    norm = functools.partial(torch.nn.LayerNorm, eps=config["layer_norm_eps"])
    theirs = timm.models.vision_transformer.VisionTransformer(**config["kwargs"], norm_layer=norm)
    theirs.load_state_dict(safetensors.torch.load_file(out / "model.safetensors"), strict=True)
    method, _ = load_method(run / "checkpoints" / "last.ckpt")
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(theirs.eval()(images), method.eval().backbone(images), atol=1e-5)


def test_a_small_cnn_to_torchvision_is_one_line(tmp_path):
    from conftest import TINY

    run = tmp_path / "run"
    assert run_cli("train", *TINY, "trainer.max_steps=1", "probe.enabled=false", f"hydra.run.dir={run}").returncode == 0
    result = run_cli("export", f"checkpoint={run}/checkpoints/last.ckpt", "format=torchvision", f"out={tmp_path / 'x'}")
    assert "format=torchvision takes a ResNet encoder (model=resnet18 or resnet50), not SmallCNN" in one_error_line(result)


def test_a_speech_encoder_loads_through_torch_hub_as_an_s3prl_upstream_with_our_layers(tmp_path):
    from conftest import TINY_SPEECH_RUN
    from ssl_zoo.data.base import Waves

    run = tmp_path / "run"
    result = run_cli("train", "method=masked_speech", *TINY_SPEECH_RUN, "probe.enabled=false", f"hydra.run.dir={run}")
    assert result.returncode == 0, result.stderr[-2000:]
    out = tmp_path / "upstream"
    result = run_cli("export", f"checkpoint={run}/checkpoints/last.ckpt", "format=s3prl", f"out={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    upstream = torch.hub.load(str(out), "ssl_zoo_upstream", source="local", trust_repo=True)
    wavs = [torch.randn(16_000) * 0.1, torch.randn(9_000) * 0.1]  # two clips of different lengths
    with torch.no_grad():
        hidden = upstream(wavs)["hidden_states"]
        method, _ = load_method(run / "checkpoints" / "last.ckpt")
        method.eval()
        audio = torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True)
        feats, real = method.log_mel(Waves(audio, torch.tensor([16_000, 9_000])))
        ours = method.backbone(feats, real, all_layers=True)
    assert len(hidden) == method.backbone.cfg.n_layer + 1
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(hidden, ours))
    assert upstream.get_downsample_rates("hidden_states") == 160  # 10 ms at 16 kHz
    result = run_cli("export", f"checkpoint={run}/checkpoints/last.ckpt", "format=hf", f"out={tmp_path / 'x'}")
    assert "holds a masked_speech model; format=hf exports gpt or bert checkpoints only" in one_error_line(result)
