"""Two processes on the CPU (gloo): SimCLR with negatives gathered across ranks."""

import json

from conftest import run_cli


def test_two_process_ddp_simclr(tmp_path):
    run_dir = tmp_path / "ddp"
    result = run_cli(
        "train", "method=simclr", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
        "trainer.precision=32-true", "trainer.sync_batchnorm=false", "trainer.max_steps=3",
        "trainer.enable_progress_bar=false", "data.num_train=256", "data.num_test=100", "data.batch_size=16",
        "probe.max_train=200", "probe.steps=20", "probe.weight_decays=[0.0]",
        "probe.random_init_baseline=false", f"hydra.run.dir={run_dir}",
        fresh_process=True,  # Lightning's DDP launcher starts the second rank by running the command line again
    )
    assert result.returncode == 0, result.stderr[-4000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["train"]["steps"] == 3
    assert results["extra"]["world_size"] == 2
    # 2 ranks x 16 images x 2 views: every view has 1 positive and 62 negatives
    assert results["extra"]["final_metrics"]["train/negatives"] == 62
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
