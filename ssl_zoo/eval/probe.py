"""The common linear-probe evaluator, written once for every method and modality.

Features are extracted once with the encoder frozen and in eval mode, then standardised with the
train statistics. A multinomial logistic regression is fitted to convergence by full-batch L-BFGS for
each L2 penalty of a small sweep (CLIP's linear-probe protocol, Radford et al. 2021), the best is
chosen on a validation split carved from train, refit on all of train and scored on test (top-1).
Convergence matters: self-supervised features are strongly correlated, and a first-order fit of a few
hundred steps stops far from the optimum on them (the random-init ViT on shapes: 15% after 300 AdamW
steps, 25% at the optimum). `solver=adamw` is the earlier protocol (a (learning rate, weight decay)
sweep of full-batch AdamW steps), kept to reproduce its figures. Weighted kNN (cosine similarity, k = 20, weights exp(s / 0.07), a bank of at most 10k
train items; `probe=lightly`: lightly's k = 200, T = 0.1 over the whole train set) is scored on the
same features. `probe_method` does all of it, also for a randomly initialised copy of the encoder (the
baseline a pretrained encoder has to beat) and for the method's own baselines (speech: the log-mel
features themselves).

Features are (N, D), or (N, L, D) when a method offers every layer (probe_layer=weighted): then the
classifier reads a softmax-weighted sum of the layers whose weights it learns with it (SUPERB).
"""

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Annotated

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset

from ssl_zoo.atomic import atomic_write
from ssl_zoo.data.base import ProbeSplits, cache_root, collate
from ssl_zoo.errors import BadValue, UserError
from ssl_zoo.settings import Matches, OneOf, Range, as_typed

DIAGNOSTICS = ("rankme", "uniformity", "class_alignment")  # of collapse_diagnostics
DEFAULT_STEPS = {"lbfgs": 3000, "adamw": 300}  # probe.steps=null: iterations at most (L-BFGS stops once converged), or AdamW steps


@dataclass
class ProbeConfig:
    name: Annotated[str, Matches(r"[\w.-]+", "a name (letters, digits, . _ -)")] = "default"  # the protocol's name (conf/probe/*.yaml), recorded with the figures
    enabled: bool = True
    batch_size: Annotated[int, Range(1, whole=True)] = 256  # for feature extraction
    max_train: Annotated[int | None, Range(2, whole=True, nullable=True)] = 10_000  # probe-train examples used (a seeded subset), None = all
    val_fraction: Annotated[float, Range(0, 0.99, above=True)] = 0.2  # of probe-train, to choose the hyper-parameters
    solver: Annotated[str, OneOf(("lbfgs", "adamw"))] = "lbfgs"  # lbfgs: to convergence, the L2 penalty swept | adamw: the earlier
    #                                                                protocol, lr and decay swept
    lrs: list[float] = field(default_factory=lambda: [0.1, 0.01])  # adamw only
    weight_decays: list[float] | None = None  # the L2 penalties tried; None: lbfgs the log grid below, adamw ADAMW_DECAYS
    l2_low: float = 1e-6  # lbfgs: the log-spaced grid of L2 penalties from l2_low to l2_high, l2_points of them
    l2_high: float = 1.0  #   (a converged logistic regression's best penalty ranges over orders of magnitude:
    l2_points: int = 7  #   CLIP sweeps 1e-6 to 1e6); a choice at an end of the grid is flagged in results.json
    steps: Annotated[int | None, Range(1, whole=True, nullable=True)] = None  # per fit: L-BFGS iterations at most (None: 3000;
    #                                                                           it stops once converged), or AdamW steps (None: 300)
    knn_k: Annotated[int, Range(1, whole=True)] = 20
    knn_temperature: Annotated[float, Range(0, above=True)] = 0.07
    random_init_baseline: bool = True
    finetune_steps: Annotated[int, Range(0, whole=True)] = 0  # > 0: also fine-tune the whole encoder with a linear head
    finetune_lr: Annotated[float, Range(0, above=True)] = 1e-4  #   (and the random-init one)
    finetune_batch_size: Annotated[int, Range(1, whole=True)] = 32
    cache_random_init: bool = False  # keep the random-init encoder's scores in the cache (conf: on), see random_init_scores
    seed: Annotated[int, Range(0, 2**32 - 1, whole=True)] = 0

    @classmethod
    def check_together(cls, prefix: str, values: dict) -> None:
        """A setting that the others leave unread is refused (it would be recorded, not used)."""
        tuned = (values.get("finetune_steps") or 0) > 0
        grid = values.get("solver", "lbfgs") == "lbfgs" and values.get("weight_decays") is None  # the log grid of penalties
        for key, read_when, read in (("lrs", "solver=adamw", values.get("solver", "lbfgs") == "adamw"),
                                     ("finetune_lr", "finetune_steps > 0", tuned), ("finetune_batch_size", "finetune_steps > 0", tuned),
                                     *((k, "solver=lbfgs and weight_decays=null (its grid)", grid) for k in ("l2_low", "l2_high", "l2_points"))):
            if key in values and values[key] != getattr(cls(), key) and not read:
                raise BadValue(f"{prefix}{key}", f"{prefix}{key}={as_typed(values[key])} is read only with {prefix}{read_when}; "
                               f"set that too, or drop {prefix}{key}")

    def penalties(self) -> list[float]:
        """The weight decays (L2 penalties) the sweep tries, lowest first."""
        if self.weight_decays is not None:
            return sorted(set(self.weight_decays))
        if self.solver == "adamw":
            return list(ADAMW_DECAYS)
        return torch.logspace(math.log10(self.l2_low), math.log10(self.l2_high), self.l2_points, dtype=torch.float64).tolist()


ADAMW_DECAYS = (0.0, 1e-4, 1e-3, 1e-2)  # the earlier protocol's sweep (solver=adamw), kept to reproduce its figures


@torch.no_grad()
def extract_features(embed, dataset: Dataset, batch_size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Run `embed` over a labelled dataset: features (N, D) float32 on the CPU, labels (N,)."""
    features, labels = [], []
    for inputs, y in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate):
        inputs = inputs.to(device) if hasattr(inputs, "to") else inputs  # a tensor, or a batch type such as Waves
        features.append(embed(inputs).float().cpu())
        labels.append(torch.as_tensor(y))
    return torch.cat(features), torch.cat(labels).long()


def standardise(train: torch.Tensor, *others: torch.Tensor) -> list[torch.Tensor]:
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    return [(x - mean) / std for x in (train, *others)]


class Readout(torch.nn.Module):
    """A linear classifier of features (N, D); of features (N, L, D), a linear classifier of their
    softmax-weighted sum over the L layers, the weights learned with it (starting equal)."""

    def __init__(self, feature_shape: tuple[int, ...], num_classes: int):
        super().__init__()
        self.layer_logits = torch.nn.Parameter(torch.zeros(feature_shape[0])) if len(feature_shape) == 2 else None
        self.linear = torch.nn.Linear(feature_shape[-1], num_classes)

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        if self.layer_logits is None:
            return x
        return (self.layer_logits.softmax(0)[:, None] * x).sum(-2)  # (N, L, D) -> (N, D)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.mix(x))


def fit_linear(x: torch.Tensor, y: torch.Tensor, num_classes: int, lr: float | None, weight_decay: float, steps: int,
               seed: int) -> Readout:
    """Multinomial logistic regression of features x (N, D) or (N, L, D): with lr None, the minimum of
    cross-entropy + weight_decay / 2 * |W|^2 found by full-batch L-BFGS (at most `steps` iterations);
    with an lr, `steps` full-batch AdamW steps with a cosine schedule (the earlier protocol)."""
    torch.manual_seed(seed)
    layer = Readout(tuple(x.shape[1:]), num_classes)
    if lr is None:
        opt = torch.optim.LBFGS(layer.parameters(), lr=1, max_iter=steps, history_size=20, line_search_fn="strong_wolfe",
                                tolerance_grad=1e-9, tolerance_change=1e-12)

        def objective():
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(layer(x), y) + weight_decay / 2 * layer.linear.weight.pow(2).sum()
            loss.backward()
            return loss

        opt.step(objective)  # one call runs the iterations until convergence or `steps`
        return layer
    opt = torch.optim.AdamW(layer.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(layer(x), y).backward()
        opt.step()
        sched.step()
    return layer


@torch.no_grad()
def accuracy(layer, x, y) -> float:
    return (layer(x).argmax(1) == y).float().mean().item()


def linear_probe(x_train, y_train, x_test, y_test, num_classes: int, cfg: ProbeConfig) -> tuple[float, dict, Readout]:
    """Test top-1 of the linear classifier whose L2 penalty (and lr, for AdamW) scored best on a
    validation split, the choice, and the classifier (fitted on the standardised features)."""
    if len(x_train) < 2:
        raise UserError(f"the probe has {len(x_train)} training example(s): it needs two or more, one to fit on and one "
                        "to choose its penalty; give more probe data (data.*) or a larger probe.max_train")
    x_train, x_test = standardise(x_train, x_test)
    order = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(cfg.seed))
    n_val = max(1, int(cfg.val_fraction * len(x_train)))
    val, fit = order[:n_val], order[n_val:]
    scores = {}
    steps = cfg.steps or DEFAULT_STEPS[cfg.solver]
    penalties = cfg.penalties()
    for lr in (cfg.lrs if cfg.solver == "adamw" else [None]):
        for wd in penalties:
            layer = fit_linear(x_train[fit], y_train[fit], num_classes, lr, wd, steps, cfg.seed)
            scores[(lr, wd)] = accuracy(layer, x_train[val], y_train[val])
    (lr, wd), val_acc = max(scores.items(), key=lambda kv: kv[1])  # ties: the first (lr), the weakest penalty
    layer = fit_linear(x_train, y_train, num_classes, lr, wd, steps, cfg.seed)
    chosen = {"weight_decay": wd, "val_acc": val_acc} if lr is None else {"lr": lr, "weight_decay": wd, "val_acc": val_acc}
    chosen["weight_decays"] = penalties
    if (warning := grid_end_warning(scores, wd, penalties, cfg)) is not None:
        chosen["warning"] = warning
    if layer.layer_logits is not None:
        chosen["layer_weights"] = [round(w, 4) for w in layer.layer_logits.softmax(0).tolist()]
    return accuracy(layer, x_test, y_test), chosen, layer


def grid_end_warning(scores: dict, wd: float, penalties: list[float], cfg: ProbeConfig) -> str | None:
    """A warning when the chosen penalty wd is an end of the grid and scored better on validation than
    every other (lr, penalty): the validation accuracy may still rise past that end. A tie with the next
    penalty inward is a plateau that the grid brackets; below a penalty of 0 there is nothing."""
    best = max(scores.values())  # scores: {(lr, penalty): validation accuracy}
    alone_best = all(score < best for (_, penalty), score in scores.items() if penalty != wd)
    low, high = penalties[0], penalties[-1]
    if len(penalties) < 2 or not alone_best or wd not in (low, high) or wd == 0:
        return None
    side = "lowest" if wd == low else "highest"
    where = "probe.weight_decays" if cfg.weight_decays is not None or cfg.solver != "lbfgs" else (
        "probe.l2_low" if wd == low else "probe.l2_high")
    return (f"the chosen L2 penalty {wd:g} is the {side} of the grid ({low:g} .. {high:g}); the best may lie beyond it: "
            f"widen the grid ({where})")


@torch.no_grad()
def knn_accuracy(x_train, y_train, x_test, y_test, num_classes: int, k: int = 20, temperature: float = 0.07) -> float:
    """Weighted kNN on cosine similarity: each of the k nearest votes exp(similarity / T) for its label."""
    x_train, x_test = F.normalize(x_train, dim=1), F.normalize(x_test, dim=1)
    k = min(k, len(x_train))
    correct = 0
    for start in range(0, len(x_test), 1024):  # (chunk, N_train) similarities at a time
        sim, idx = (x_test[start : start + 1024] @ x_train.T).topk(k, dim=1)
        votes = torch.zeros(len(sim), num_classes).scatter_add_(1, y_train[idx], (sim / temperature).exp())
        correct += (votes.argmax(1) == y_test[start : start + 1024]).sum().item()
    return correct / len(x_test)


@torch.no_grad()
def rankme(features: torch.Tensor, eps: float = 1e-7) -> float:
    """RankMe (Garrido et al. 2023): the effective rank of features (N, D), exp of the entropy of
    their singular values normalised to sum 1; D for features that use every direction alike, 1 for
    a collapsed encoder."""
    sigma = torch.linalg.svdvals(features.double())
    p = sigma / sigma.sum() + eps
    return float(torch.exp(-(p * p.log()).sum()))


@torch.no_grad()
def uniformity(features: torch.Tensor, t: float = 2.0) -> float:
    """Wang & Isola 2020: log E exp(-t |z_i - z_j|^2) over pairs of L2-normalised features (N, D), i != j;
    about -4 for features spread over the sphere, 0 for a collapsed encoder."""
    z = F.normalize(features.double(), dim=1)
    sq = (2 - 2 * z @ z.T).clamp_min(0)  # (N, N) squared distances
    off = ~torch.eye(len(z), dtype=torch.bool)
    return float(torch.logsumexp(-t * sq[off], 0) - math.log(int(off.sum())))


@torch.no_grad()
def alignment(a: torch.Tensor, b: torch.Tensor) -> float:
    """Wang & Isola 2020: E |z_a - z_b|^2 over positive pairs (N, D), (N, D) of L2-normalised features (0: aligned)."""
    return float((F.normalize(a.double(), dim=1) - F.normalize(b.double(), dim=1)).pow(2).sum(1).mean())


def class_alignment(features: torch.Tensor, labels: torch.Tensor) -> float:
    """Alignment over the pairs of test items of the same class (i != j): positives by label."""
    z = F.normalize(features.double(), dim=1)
    same = (labels[:, None] == labels[None, :]) & ~torch.eye(len(z), dtype=torch.bool)
    return float((2 - 2 * z @ z.T).clamp_min(0)[same].mean()) if same.any() else float("nan")


def collapse_diagnostics(features: torch.Tensor, labels: torch.Tensor, seed: int, max_items: int = 2000) -> dict:
    """RankMe, uniformity and alignment of the same-class pairs, on up to max_items test features (a
    seeded subset: the pairwise terms are quadratic)."""
    if len(features) > max_items:
        keep = torch.randperm(len(features), generator=torch.Generator().manual_seed(seed))[:max_items]
        features, labels = features[keep], labels[keep]
    return {"rankme": rankme(features), "uniformity": uniformity(features), "class_alignment": class_alignment(features, labels)}


def subsample(dataset: Dataset, max_items: int | None, seed: int) -> Dataset:
    if max_items is None or len(dataset) <= max_items:
        return dataset
    keep = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:max_items]
    return Subset(dataset, keep.sort().values.tolist())


def evaluate_encoder(embed, splits: ProbeSplits, cfg: ProbeConfig, device) -> dict:
    """Linear and kNN test accuracy of the features that `embed` gives."""
    train = subsample(splits.train, cfg.max_train, cfg.seed)
    x_train, y_train = extract_features(embed, train, cfg.batch_size, device)
    x_test, y_test = extract_features(embed, splits.test, cfg.batch_size, device)
    linear_acc, chosen, readout = linear_probe(x_train, y_train, x_test, y_test, splits.num_classes, cfg)
    if x_train.ndim == 3:  # kNN on the layer mix the linear probe learned (of the standardised layers)
        with torch.no_grad():
            x_train, x_test = (readout.mix(x) for x in standardise(x_train, x_test))
    if cfg.knn_k > len(x_train):
        print(f"probe.knn_k={cfg.knn_k} is more than the {len(x_train)} probe-train items: kNN votes over all of them")
    knn_acc = knn_accuracy(x_train, y_train, x_test, y_test, splits.num_classes, cfg.knn_k, cfg.knn_temperature)
    return {"linear_acc": linear_acc, "knn_acc": knn_acc, "chosen": chosen, "feature_dim": x_train.shape[-1],
            "num_train": len(x_train), "num_test": len(x_test), **collapse_diagnostics(x_test, y_test, cfg.seed)}


def random_init_scores(embed, splits: ProbeSplits, cfg: ProbeConfig, device) -> dict:
    """evaluate_encoder of the random-init encoder, kept in the cache (cfg.cache_random_init) so that
    methods that start from the same initialisation on the same data (BERT and data2vec on text; MAE,
    AIM and data2vec on images: the same seed builds the same encoder) are probed against it once.
    The key: the encoder's features of the first train and test batch (equal features, equal encoder
    and reading), the splits' task and sizes, and every probe setting."""
    if not cfg.cache_random_init:
        return evaluate_encoder(embed, splits, cfg, device)
    train = subsample(splits.train, cfg.max_train, cfg.seed)
    key = hashlib.sha256(json.dumps([splits.task, len(train), len(splits.test), asdict(cfg)], sort_keys=True).encode())
    for dataset in (train, splits.test):
        first, _ = extract_features(embed, Subset(dataset, range(min(len(dataset), cfg.batch_size))), cfg.batch_size, device)
        key.update(first.numpy().tobytes())
    path = cache_root(None) / "probe" / f"random-init-{key.hexdigest()[:32]}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # not there yet (or unreadable): probed now, and kept
        scores = evaluate_encoder(embed, splits, cfg, device)
        atomic_write(path, json.dumps(scores))
        return scores


def finetune_accuracy(method, splits: ProbeSplits, cfg: ProbeConfig) -> float:
    """Full fine-tuning: the encoder and a linear head trained together on probe-train (cross-entropy,
    AdamW, cosine schedule, cfg.finetune_steps steps), then test top-1. The method's weights are
    restored afterwards: fine-tuning measures the encoder, it does not change it."""
    device = method.device
    saved = {k: v.detach().clone() for k, v in method.state_dict().items()}
    train = subsample(splits.train, cfg.max_train, cfg.seed)
    with torch.no_grad():
        method.eval()
        first, _ = next(iter(DataLoader(train, batch_size=2, collate_fn=collate)))
        feature_shape = tuple(method.embed(first.to(device)).shape[1:])  # (D,), or (L, D) for a layer mix
    torch.manual_seed(cfg.seed)
    head = Readout(feature_shape, splits.num_classes).to(device)
    params = [p for p in method.parameters() if p.requires_grad] + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.finetune_lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.finetune_steps)
    order = torch.Generator().manual_seed(cfg.seed)
    method.train()
    step = 0
    try:
        while step < cfg.finetune_steps:
            for inputs, y in DataLoader(train, batch_size=cfg.finetune_batch_size, shuffle=True, generator=order,
                                        collate_fn=collate, drop_last=len(train) > cfg.finetune_batch_size):
                loss = F.cross_entropy(head(method.embed(inputs.to(device))), torch.as_tensor(y).to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                if step == cfg.finetune_steps:
                    break
        method.eval()
        x_test, y_test = extract_features(lambda x: head(method.embed(x)), splits.test, cfg.batch_size, device)
        return (x_test.argmax(1) == y_test).float().mean().item()
    finally:
        method.load_state_dict(saved)


def probe_method(method, splits: ProbeSplits, cfg: ProbeConfig, random_init=None) -> dict:
    """The `probe` block of results.json for a method, with its random-init baseline if given."""
    device = method.device
    was_training = method.training
    method.eval()
    try:
        scores = evaluate_encoder(method.embed, splits, cfg, device)
    finally:
        method.train(was_training)
    result = {
        "task": splits.task,
        "protocol": {"name": cfg.name, "solver": cfg.solver, "knn_k": cfg.knn_k, "knn_temperature": cfg.knn_temperature,
                     "max_train": cfg.max_train, "weight_decays": cfg.penalties()},
        "num_classes": splits.num_classes,
        "linear_acc": scores["linear_acc"],
        "knn_acc": scores["knn_acc"],
        "random_init_linear_acc": None,
        "random_init_knn_acc": None,
        "chosen": scores["chosen"],
        "diagnostics": {k: scores[k] for k in DIAGNOSTICS},
        "feature_dim": scores["feature_dim"],
        "num_train": scores["num_train"],
        "num_test": scores["num_test"],
    }
    if random_init is not None:
        random_init.to(device).eval()
        baseline = random_init_scores(random_init.embed, splits, cfg, device)
        result["random_init_linear_acc"] = baseline["linear_acc"]
        result["random_init_knn_acc"] = baseline["knn_acc"]
        result["random_init_diagnostics"] = {k: baseline[k] for k in DIAGNOSTICS}
    if (pair := method.positive_pair(splits.test, cfg.seed)) is not None:  # two views of the same test items
        result["diagnostics"]["alignment"] = alignment(*pair)
    for name, embed in method.baseline_embeddings().items():  # e.g. speech: the log-mel features themselves
        scores = evaluate_encoder(embed, splits, cfg, device)
        result.setdefault("baselines", {})[name] = {"linear_acc": scores["linear_acc"], "knn_acc": scores["knn_acc"]}
    if cfg.finetune_steps > 0:
        result["finetune_acc"] = finetune_accuracy(method, splits, cfg)
        if random_init is not None:  # the same fine-tuning from the initialisation: supervised from scratch
            result["random_init_finetune_acc"] = finetune_accuracy(random_init, splits, cfg)
        method.train(was_training)
    return result
