"""Speech through the command line: pretrain on the embedded spoken words -> checkpoint -> probe on a
folder of recordings in FSDD's layout (bad input: test_bad_input.py)."""

import json

import pytest

from conftest import one_error_line, run_cli
from test_speech import write_fsdd

# A few voices saying two words, a nano transformer, a few steps, a quick probe.
TINY_SPEECH = ["data=spoken_words", "data.words=[yes,no]", "data.num_voices=3", "data.takes=4", "data.test_takes=1",
               "data.batch_size=8", "model=transformer_nano", "trainer=debug", "probe.steps=30",
               "probe.weight_decays=[0.0]"]


@pytest.mark.parametrize("method", ["apc", "masked_speech"])
def test_pretrain_on_spoken_words_then_probe_a_folder_of_recordings(method, tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("train", f"method={method}", *TINY_SPEECH, "data.max_seconds=1.0", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["modality"] == "speech" and results["data"] == "spoken_words" and results["train"]["steps"] == 4
    probe = results["probe"]
    assert probe["task"] == "voice" and probe["num_classes"] == 3 and probe["num_test"] == 3 * 2
    assert 0 <= probe["random_init_linear_acc"] <= 1 and 0 <= probe["baselines"]["logmel"]["linear_acc"] <= 1
    assert "baseline 'logmel' features: linear" in result.stdout

    # FSDD's layout at 8 kHz: read at the 16 kHz and with the 1 s clips the encoder was trained on
    # (data=fsdd alone would cut at 1.5 s, longer than the encoder's 98 positions).
    recordings = write_fsdd(tmp_path / "recordings")
    again = run_cli("probe", f"checkpoint={run_dir / 'checkpoints' / 'last.ckpt'}", "data=fsdd", f"data.root={recordings}",
                    "data.task=speaker", "probe.steps=30", "probe.weight_decays=[0.0]")
    assert again.returncode == 0, again.stderr[-3000:]
    other = json.loads((run_dir / "results_fsdd_speaker.json").read_text())  # another data set and task
    assert other["data"] == "fsdd" and other["probe"]["task"] == "speaker" and other["probe"]["num_test"] == 3 * 2 * 5
    assert other["train"] == results["train"]  # the record of how this encoder was trained


def test_a_learned_mix_of_layers_and_fine_tuning_on_waveform_batches(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("train", "method=masked_speech", *TINY_SPEECH, "method.probe_layer=weighted", "method.freq_mask_width=8",
                     "probe.finetune_steps=2", f"hydra.run.dir={run_dir}")
    assert result.returncode == 0, result.stderr[-3000:]
    probe = json.loads((run_dir / "results.json").read_text())["probe"]
    weights = probe["chosen"]["layer_weights"]
    assert len(weights) == 2 + 1 and sum(weights) == pytest.approx(1.0, abs=1e-3)  # nano: 2 layers + the embeddings
    assert 0 <= probe["finetune_acc"] <= 1 and "learned layer weights" in result.stdout
    maps = run_cli("embed-plot", f"checkpoint={run_dir / 'checkpoints' / 'last.ckpt'}", "split=train")
    assert maps.returncode == 0, maps.stderr[-3000:]  # every layer's features side by side, on t-SNE's map
    assert (run_dir / "embeddings.png").read_bytes()[:4] == b"\x89PNG"
