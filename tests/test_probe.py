import pytest
import torch

from ssl_zoo.errors import UserError

from ssl_zoo.data.base import BatchedTensors, ProbeSplits
from ssl_zoo.eval.probe import ProbeConfig, evaluate_encoder, fit_linear, grid_end_warning, knn_accuracy, linear_probe

CFG = ProbeConfig(weight_decays=[0.0, 1e-3], steps=200)


def separable(n, d=16, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = 5 * torch.randn(classes, d, generator=g)
    y = torch.arange(n) % classes
    return centres[y] + torch.randn(n, d, generator=g), y


def test_linear_probe_solves_linearly_separable_features():
    x, y = separable(600)
    acc, chosen, _ = linear_probe(x[:400], y[:400], x[400:], y[400:], 4, CFG)
    assert acc > 0.98
    assert chosen["weight_decay"] in CFG.weight_decays and "lr" not in chosen  # L-BFGS sweeps the penalty only
    adamw = ProbeConfig(solver="adamw", lrs=[0.1, 0.01], weight_decays=[0.0, 1e-3], steps=200)  # the earlier protocol
    acc, chosen, _ = linear_probe(x[:400], y[:400], x[400:], y[400:], 4, adamw)
    assert acc > 0.98 and chosen["lr"] in adamw.lrs


def test_the_penalty_grid_is_log_spaced_and_a_choice_at_its_end_is_flagged():
    assert ProbeConfig().penalties() == pytest.approx([1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    assert ProbeConfig(solver="adamw").penalties() == [0.0, 1e-4, 1e-3, 1e-2]  # the earlier protocol's sweep
    # 400 noise dimensions and 20 weak ones carrying the label, 300 items to fit: the more penalty the better, up to 10.
    g = torch.Generator().manual_seed(0)

    def noisy(n, d=400):
        y = torch.arange(n) % 2
        x = torch.randn(n, d, generator=g)
        x[:, :20] += 0.4 * (2 * y[:, None] - 1)
        return x, y

    (x, y), (x_test, y_test) = noisy(600), noisy(1000)
    _, chosen, _ = linear_probe(x, y, x_test, y_test, 2, ProbeConfig(val_fraction=0.5))
    assert chosen["weight_decay"] == 1.0 and chosen["weight_decays"][-1] == 1.0
    assert "highest of the grid" in chosen["warning"] and "probe.l2_high" in chosen["warning"]
    _, wider, _ = linear_probe(x, y, x_test, y_test, 2, ProbeConfig(val_fraction=0.5, l2_high=1e4, l2_points=11))
    assert wider["weight_decay"] == pytest.approx(10.0) and "warning" not in wider  # bracketed: no warning
    # The weakest penalties tie on these features (they separate the 300): a plateau at the low end is no warning.
    _, tied, _ = linear_probe(x, y, x_test, y_test, 2, ProbeConfig(val_fraction=0.5, weight_decays=[1e-6, 1e-5]))
    assert tied["weight_decay"] == 1e-6 and "warning" not in tied
    # A list of penalties is widened by listing more: the warning names that setting, and a duplicate is tried once.
    _, listed, _ = linear_probe(x, y, x_test, y_test, 2, ProbeConfig(val_fraction=0.5, weight_decays=[1e-2, 1e-1, 1e-1]))
    assert listed["weight_decays"] == [1e-2, 1e-1] and "widen the grid (probe.weight_decays)" in listed["warning"]
    assert ProbeConfig(l2_low=-1, weight_decays=[0.0]).penalties() == [0.0]  # a list given: the grid's ends are not read
    from ssl_zoo.build import check_settings
    check_settings({"probe": {"l2_low": -1, "weight_decays": [0.0]}})
    with pytest.raises(UserError, match="probe.l2_points=0 must be a whole number of at least 2"):
        check_settings({"probe": {"l2_low": 1e-6, "l2_points": 0, "weight_decays": None}})
    assert grid_end_warning({(None, 0.0): 0.9, (None, 1e-3): 0.8}, 0.0, [0.0, 1e-3], ProbeConfig()) is None  # nothing below 0


def correlated(n=1500, d=24, classes=5, seed=0):
    """Labels from a linear rule on features whose directions differ in scale by 10^2 and are mixed,
    as self-supervised features are (a few strong directions, many weak ones carrying the labels)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g)
    y = (z[:, -classes:] + 0.3 * torch.randn(n, classes, generator=g)).argmax(1)  # the weakest directions decide
    mix = torch.linalg.qr(torch.randn(d, d, generator=g))[0]
    x = (z * torch.logspace(0, -2, d)) @ mix
    return (x - x.mean(0)) / x.std(0), y


def test_lbfgs_probe_reaches_the_logistic_regression_optimum_on_correlated_features():
    """The fit is the penalised optimum (the gradient vanishes, and sklearn's lbfgs LogisticRegression finds the
    same loss), where 300 AdamW steps stop far short of it on the same features."""
    from sklearn.linear_model import LogisticRegression

    x, y = correlated()
    wd = 1e-4

    def penalised(weight, bias):  # mean cross-entropy + wd / 2 |W|^2
        return torch.nn.functional.cross_entropy(x @ weight.T + bias, y) + wd / 2 * weight.pow(2).sum()

    layer = fit_linear(x, y, 5, None, wd, steps=3000, seed=0)
    loss = penalised(layer.linear.weight, layer.linear.bias)
    loss.backward()
    assert max(p.grad.abs().max() for p in layer.linear.parameters()) < 1e-3
    reference = LogisticRegression(C=1 / (wd * len(x)), max_iter=20_000, tol=1e-10).fit(x.double().numpy(), y.numpy())
    sklearn_loss = penalised(*(torch.as_tensor(a, dtype=torch.float32) for a in (reference.coef_, reference.intercept_)))
    assert loss.item() == pytest.approx(sklearn_loss.item(), abs=1e-4)
    accuracy = lambda m: (m(x).argmax(1) == y).float().mean().item()  # noqa: E731
    adamw = fit_linear(x, y, 5, 0.1, 0.0, steps=300, seed=0)  # the earlier protocol's best lr, no decay
    fit = lambda m: torch.nn.functional.cross_entropy(m(x), y).item()  # noqa: E731
    assert fit(adamw) > fit(layer) + 0.2 and accuracy(adamw) < accuracy(layer) - 0.05


def test_linear_probe_is_at_chance_on_random_labels():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(2000, 16, generator=g), torch.randint(0, 4, (2000,), generator=g)
    acc, _, _ = linear_probe(x[:1000], y[:1000], x[1000:], y[1000:], 4, CFG)
    assert abs(acc - 0.25) < 0.06


def test_knn_on_clusters_and_on_noise():
    x, y = separable(600)
    assert knn_accuracy(x[:400], y[:400], x[400:], y[400:], 4) > 0.98
    g = torch.Generator().manual_seed(2)
    xr, yr = torch.randn(2000, 16, generator=g), torch.randint(0, 4, (2000,), generator=g)
    assert abs(knn_accuracy(xr[:1000], yr[:1000], xr[1000:], yr[1000:], 4) - 0.25) < 0.06


def test_evaluate_encoder_extracts_features_through_embed():
    x, y = separable(300, d=8)
    splits = ProbeSplits(BatchedTensors(x[:200], y[:200]), BatchedTensors(x[200:], y[200:]), 4, "clusters")
    calls = []

    def embed(inputs):
        calls.append(len(inputs))
        return inputs * 2

    scores = evaluate_encoder(embed, splits, ProbeConfig(batch_size=64, steps=100, lrs=[0.1], weight_decays=[0.0]), "cpu")
    assert scores["linear_acc"] > 0.95 and scores["feature_dim"] == 8
    assert sum(calls) == 300 and max(calls) == 64  # each example embedded once, in batches


def test_finetuning_trains_encoder_and_head_then_restores_the_weights():
    from ssl_zoo.data.base import BatchedTensors, ProbeSplits
    from ssl_zoo.eval.probe import ProbeConfig, finetune_accuracy

    class Toy(torch.nn.Module):
        embed_dim, device = 4, torch.device("cpu")

        def __init__(self):
            super().__init__()
            self.encoder = torch.nn.Linear(8, 4)

        def embed(self, x):
            return torch.tanh(self.encoder(x))

    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 8, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    splits = ProbeSplits(BatchedTensors(x[:400], y[:400]), BatchedTensors(x[400:], y[400:]), 2, "sign")
    toy = Toy()
    before = {k: v.clone() for k, v in toy.state_dict().items()}
    acc = finetune_accuracy(toy, splits, ProbeConfig(finetune_steps=150, finetune_lr=3e-2, finetune_batch_size=32))
    assert acc > 0.9
    assert all(torch.equal(before[k], v) for k, v in toy.state_dict().items())  # measured, not changed


def test_collapse_diagnostics_against_their_definitions():
    import itertools
    import math

    import numpy as np

    from ssl_zoo.eval.probe import alignment, class_alignment, rankme, uniformity

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 6, generator=g), torch.randint(0, 3, (40,), generator=g)
    sigma = np.linalg.svd(x.numpy().astype(np.float64), compute_uv=False)
    p = sigma / sigma.sum() + 1e-7
    assert rankme(x) == pytest.approx(math.exp(-(p * np.log(p)).sum()))
    assert rankme(torch.randn(40, 1, generator=g) @ torch.randn(1, 6, generator=g)) == pytest.approx(1.0, abs=1e-3)  # collapsed
    z = torch.nn.functional.normalize(x.double(), dim=1)
    pairs = [(i, j) for i, j in itertools.permutations(range(40), 2)]
    direct = math.log(sum(math.exp(-2 * float((z[i] - z[j]).pow(2).sum())) for i, j in pairs) / len(pairs))
    assert uniformity(x) == pytest.approx(direct) and uniformity(torch.ones(5, 3)) == pytest.approx(0.0)
    same = [(i, j) for i, j in pairs if y[i] == y[j]]
    assert class_alignment(x, y) == pytest.approx(sum(float((z[i] - z[j]).pow(2).sum()) for i, j in same) / len(same))
    assert alignment(x, 3 * x) == pytest.approx(0.0) and alignment(x, -x) == pytest.approx(4.0)  # scale-free: normalised


def test_a_random_init_encoder_is_probed_once_per_initialisation_data_and_settings(tmp_path, monkeypatch):
    from ssl_zoo.eval import probe

    monkeypatch.setenv("SSL_ZOO_CACHE", str(tmp_path))
    x, y = separable(300, d=8)
    splits = ProbeSplits(BatchedTensors(x[:200], y[:200]), BatchedTensors(x[200:], y[200:]), 4, "clusters")
    cfg = ProbeConfig(batch_size=64, steps=50, lrs=[0.1], weight_decays=[0.0], cache_random_init=True)
    probed = []
    real = probe.evaluate_encoder
    monkeypatch.setattr(probe, "evaluate_encoder", lambda *a: probed.append(a) or real(*a))
    first = probe.random_init_scores(lambda inputs: inputs * 2, splits, cfg, "cpu")
    again = probe.random_init_scores(lambda inputs: inputs * 2, splits, cfg, "cpu")  # the same features: kept
    assert again == first and len(probed) == 1
    probe.random_init_scores(lambda inputs: inputs * 3, splits, cfg, "cpu")  # another encoder
    probe.random_init_scores(lambda inputs: inputs * 2, splits, ProbeConfig(**{**cfg.__dict__, "steps": 60}), "cpu")  # other settings
    assert len(probed) == 3 and len(list((tmp_path / "probe").glob("random-init-*.json"))) == 3
    first_only = ProbeConfig(**{**cfg.__dict__, "cache_random_init": False})
    probe.random_init_scores(lambda inputs: inputs * 2, splits, first_only, "cpu")
    assert len(probed) == 4  # not kept: probed every time
