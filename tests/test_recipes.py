"""The anchors' published recipes as experiments: they compose with the anchors' settings and run a
few steps on the CPU unchanged but for size (the GPU, the 200 epochs and the batch are overridden)."""

import json

import pytest
from test_image_data import write_cifar10

from ssl_zoo import api


@pytest.mark.parametrize("method", ["simclr", "byol"])
def test_lightly_cifar10_recipes_compose_with_lightlys_settings_and_run(method, tmp_path):
    recipe = f"experiment=lightly_cifar10_{method}"
    cfg = api.compose(recipe)
    assert (cfg.method.name, cfg.model.name, cfg.data.name, cfg.trainer.accelerator) == (method, "resnet18", "cifar10", "gpu")
    assert cfg.data.batch_size == 512 and cfg.method.optim.lr == pytest.approx(0.06 * 512 / 128)
    assert (cfg.method.optim.name, cfg.method.optim.momentum, cfg.method.optim.weight_decay) == ("sgd", 0.9, 5e-4)
    assert cfg.trainer.max_epochs == 200 and cfg.trainer.max_steps == -1
    assert (cfg.probe.name, cfg.probe.knn_k, cfg.probe.knn_temperature, cfg.probe.max_train) == ("lightly", 200, 0.1, None)
    if method == "simclr":
        assert cfg.method.temperature == 0.5 and cfg.method.projector_dim == 128
    else:
        assert (cfg.method.tau_base, cfg.method.tau_schedule) == (0.99, "constant")

    write_cifar10(tmp_path / "data", per_batch=8)
    results = api.train(recipe, f"data.root={tmp_path / 'data'}", "data.batch_size=8", "data.num_workers=0",
                        "trainer.accelerator=cpu", "trainer.precision=32-true", "trainer.max_epochs=-1", "trainer.max_steps=2",
                        "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1", "probe.random_init_baseline=false",
                        "probe.steps=5",
                        run_dir=tmp_path / "run")
    assert results["train"]["steps"] == 2 and results["probe"]["protocol"]["name"] == "lightly"
    assert results["probe"]["num_train"] == 40  # the whole train set as the bank
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["probe"]["leak"]["in_pretraining"] == 0
    if method == "byol":  # the target moved with the constant momentum, not the cosine schedule
        import csv

        taus = [float(r["train/tau"]) for r in csv.DictReader(open(tmp_path / "run" / "metrics.csv")) if r.get("train/tau")]
        assert taus and all(t == pytest.approx(0.99) for t in taus)


def test_byol_constant_tau_keeps_the_momentum_and_unknown_schedules_are_refused():
    from ssl_zoo.errors import UserError

    with pytest.raises(UserError, match="method.tau_schedule=step is not one of: cosine, linear, constant"):
        api.train("method=byol", "method.tau_schedule=step", "trainer.max_steps=1", run_dir="/nonexistent/never")
