"""Invariants that hold for every method in conf/method/, so that the next method is covered the day it
lands: each trainable parameter is in exactly one optimizer group (the online probe's without weight
decay), and after one optimizer step every parameter that received a gradient has moved; a teacher
(requires_grad off) is in no group and gets no gradient."""

import pytest
import torch
from pytorch_lightning.callbacks import Callback

from conftest import TINY_SPEECH_RUN, compose_train
from ssl_zoo import config_dir
from ssl_zoo.run.train import train

pytestmark = pytest.mark.filterwarnings("ignore:Experiment logs directory")

METHODS = sorted(p.stem for p in (config_dir() / "method").glob("*.yaml"))

# Small data of each modality (the method's own model is kept): one step is all a test needs.
DATA = {
    "image": ["data=shapes", "data.num_train=64", "data.num_test=20", "data.batch_size=16"],
    "speech": [o for o in TINY_SPEECH_RUN if not o.startswith(("model=", "trainer="))],
    "text": ["data.batch_size=4"],  # the text file comes from the corpus fixture
}
MODALITY = {"simclr": "image", "byol": "image", "mae": "image", "aim": "image", "data2vec_image": "image",
            "data2vec_text": "text", "gpt": "text", "bert": "text", "masked_speech": "speech", "apc": "speech",
            "data2vec_speech": "speech"}
CASES = [(m, MODALITY[m], []) for m in METHODS]


def test_every_method_has_a_modality_here():
    assert set(METHODS) <= set(MODALITY), "a new method: say which modality's small data it runs on"


class Watch(Callback):
    """Keeps the weights before the first optimizer step and after it, the optimizer's groups, and which
    parameters had a nonzero gradient."""

    def on_before_optimizer_step(self, trainer, method, optimizer):
        self.before = {n: p.detach().clone() for n, p in method.named_parameters()}
        self.trainable = {n: id(p) for n, p in method.named_parameters() if p.requires_grad}
        self.groups = [(g["weight_decay"], [id(p) for p in g["params"]]) for g in optimizer.param_groups]
        self.with_gradient = {n for n, p in method.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
        self.frozen_with_gradient = [n for n, p in method.named_parameters() if not p.requires_grad and p.grad is not None]

    def on_train_batch_end(self, trainer, method, outputs, batch, batch_idx):
        self.after = {n: p.detach().clone() for n, p in method.named_parameters()}


@pytest.mark.parametrize("method, modality, extra", CASES, ids=[f"{m}-{mod}" for m, mod, _ in CASES])
def test_every_trainable_parameter_is_optimised_once_and_moves(method, modality, extra, corpus, tmp_path):
    data = DATA[modality] + ([f"data=text_file", f"data.path={corpus}", "data.block_size=32"] if modality == "text" else [])
    cfg = compose_train(f"method={method}", *data, *extra, "trainer=debug", "trainer.max_steps=1", "probe.enabled=false")
    watch = Watch()
    train(cfg, tmp_path, callbacks=[watch])

    ids = [i for _, group in watch.groups for i in group]
    assert len(ids) == len(set(ids)), "a parameter is in two optimizer groups"
    missing = sorted(n for n, i in watch.trainable.items() if i not in ids)
    assert not missing, f"trainable parameters the optimizer never sees: {missing}"
    assert set(ids) == set(watch.trainable.values()), "the optimizer holds a parameter that is not trainable"
    head = {i for n, i in watch.trainable.items() if n.startswith("online_head.")}
    assert all(wd == 0.0 for wd, group in watch.groups if head & set(group)), "the online probe takes weight decay"
    assert head or modality == "text", "the online probe is on in every method's config (the text file has no labels)"
    assert not watch.frozen_with_gradient, f"a frozen parameter (a teacher's) got a gradient: {watch.frozen_with_gradient}"
    assert watch.with_gradient, "no parameter received a gradient"
    unmoved = sorted(n for n in watch.with_gradient if torch.equal(watch.after[n], watch.before[n]))
    assert not unmoved, f"parameters with a gradient that the step did not change: {unmoved}"
