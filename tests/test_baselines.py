"""Encoders trained elsewhere, probed and asked in context beside ours, from local files only: tiny
Hugging Face, torchvision and timm models built here; their rows appear in `compare` as baselines."""

import json

import pytest
import torch

from conftest import TINY, TINY_SPEECH_RUN, own_copy, run_cli

transformers = pytest.importorskip("transformers")

QUICK_PROBE = ["probe.steps=20", "probe.weight_decays=[0.0]", "device=cpu"]
STDLIB = ["data=python_stdlib", "data.max_chars=150000", "data.tokenizer=char", "data.block_size=32", "data.probe_length=32",
          "data.probe_train_per_class=20", "data.probe_test_per_class=5"]


@pytest.fixture(scope="module")
def hf_gpt(gpt_run, tmp_path_factory):
    """Our tiny GPT exported as a Hugging Face GPT-2 folder: a local causal LM like any other."""
    run_dir, _ = gpt_run
    out = tmp_path_factory.mktemp("hf") / "tiny-gpt2"
    assert run_cli("export", f"checkpoint={run_dir}/checkpoints/last.ckpt", "format=hf", f"out={out}").returncode == 0
    return out


def test_a_hugging_face_lm_is_probed_on_python_stdlib_and_listed_as_a_baseline(hf_gpt, tmp_path):
    out = tmp_path / "baseline"
    result = run_cli("probe", f"encoder=hf:{hf_gpt}", *STDLIB, *QUICK_PROBE, f"out={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["method"] == "hf:tiny-gpt2" and results["extra"]["baseline"] and results["modality"] == "text"
    probe = results["probe"]
    assert probe["task"] == "stdlib_package" and probe["num_test"] == 50
    assert 0 <= probe["linear_acc"] <= 1 and probe["random_init_linear_acc"] is not None
    assert len(probe["chosen"]["layer_weights"]) == 3  # embeddings + 2 blocks of transformer_nano, mixed as ours
    table = run_cli("compare", str(out))
    assert table.returncode == 0 and "| hf:tiny-gpt2 (baseline) |" in table.stdout


def test_a_torchvision_and_a_timm_resnet_are_probed_on_shapes_from_a_weights_file(tmp_path):
    import torchvision

    torch.manual_seed(0)
    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    for kind in ("torchvision", "timm"):
        if kind == "timm":
            pytest.importorskip("timm")
        out = tmp_path / kind
        result = run_cli("probe", f"encoder={kind}:resnet18", f"weights={weights}", "data=shapes", *TINY[1:], *QUICK_PROBE,
                         f"out={out}")
        assert result.returncode == 0, result.stderr[-3000:]
        results = json.loads((out / "results.json").read_text())
        assert results["method"] == f"{kind}:resnet18" and results["probe"]["feature_dim"] == 512
    table = run_cli("compare", str(tmp_path))
    assert "| torchvision:resnet18 (baseline) |" in table.stdout and "| timm:resnet18 (baseline) |" in table.stdout


def test_a_wav2vec2_folder_is_probed_on_spoken_words(tmp_path):
    config = transformers.Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                         conv_dim=(16, 16), conv_kernel=(10, 3), conv_stride=(5, 2), conv_bias=True,
                                         num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    folder = tmp_path / "tiny-wav2vec2"
    transformers.Wav2Vec2Model(config).save_pretrained(folder)
    transformers.Wav2Vec2FeatureExtractor(sampling_rate=16000, return_attention_mask=True).save_pretrained(folder)
    out = tmp_path / "baseline"
    speech = [o for o in TINY_SPEECH_RUN if o.startswith("data")]
    result = run_cli("probe", f"encoder=hf:{folder}", *speech, *QUICK_PROBE, f"out={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    probe = json.loads((out / "results.json").read_text())["probe"]
    assert probe["task"] == "voice" and len(probe["chosen"]["layer_weights"]) == 3 and probe["feature_dim"] == 32


def test_icl_on_the_exported_gpt_as_a_hugging_face_model_scores_as_ours(gpt_run, hf_gpt, tmp_path):
    ckpt = own_copy(gpt_run[0], tmp_path)
    task = tmp_path / "pairs.jsonl"
    task.write_text("".join(json.dumps({"input": a, "output": b, "choices": ["mat", "bone", "tree"]}) + "\n"
                            for a, b in [("cat", "mat"), ("dog", "bone"), ("bird", "tree"), ("sat", "mat"), ("ate", "bone")]))
    asked = [f"task={task}", "shots=[0,1]", "num_queries=4", "describe=false", "device=cpu"]
    ours = run_cli("icl", f"checkpoint={ckpt}", *asked)
    assert ours.returncode == 0, ours.stderr[-3000:]
    theirs = run_cli("icl", f"checkpoint=hf:{hf_gpt}", *asked, f"out={tmp_path / 'hf_icl'}")
    assert theirs.returncode == 0, theirs.stderr[-3000:]
    mine = json.loads((ckpt.parents[1] / "results.json").read_text())["icl"]["pairs"]
    hf = json.loads((tmp_path / "hf_icl" / "results.json").read_text())
    assert hf["extra"]["baseline"] and hf["icl"]["pairs"] == mine
