"""lightly's kNN monitor as a Lightning callback: during pretraining, every few steps, the weighted kNN
accuracy of the encoder's features on the probe's test set, against a bank of probe-train features
(the k and T of the probe config). Its best is reported as the best, with its step, beside the last:
picking the best of many looks at the test set is not a final figure."""

import torch
from pytorch_lightning.callbacks import Callback

from ssl_zoo.data.base import ProbeSplits
from ssl_zoo.eval.probe import ProbeConfig, extract_features, knn_accuracy, subsample


class KNNMonitor(Callback):
    def __init__(self, splits: ProbeSplits, cfg: ProbeConfig, every_n_steps: int):
        self.splits, self.cfg, self.every_n_steps = splits, cfg, every_n_steps
        self.history: list[list] = []  # [step, kNN accuracy]

    @torch.no_grad()
    def measure(self, trainer, method) -> None:
        step = trainer.global_step
        if self.history and self.history[-1][0] == step:
            return
        was_training = method.training
        method.eval()
        try:
            bank = subsample(self.splits.train, self.cfg.max_train, self.cfg.seed)
            (x_bank, y_bank), (x_test, y_test) = (extract_features(method.embed, d, self.cfg.batch_size, method.device)
                                                  for d in (bank, self.splits.test))
        finally:
            method.train(was_training)
        if x_bank.ndim == 3:  # every layer offered (speech): the monitor reads the last
            x_bank, x_test = x_bank[:, -1], x_test[:, -1]
        acc = knn_accuracy(x_bank, y_bank, x_test, y_test, self.splits.num_classes, self.cfg.knn_k, self.cfg.knn_temperature)
        self.history.append([step, acc])
        for logger in trainer.loggers:  # also from on_train_end, where LightningModule.log may not be called
            logger.log_metrics({"monitor/knn_acc": acc}, step=step)

    def on_train_batch_end(self, trainer, method, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self.measure(trainer, method)

    def on_train_end(self, trainer, method) -> None:
        self.measure(trainer, method)  # the last step, whatever the interval

    def report(self) -> dict:
        """For results.json: the best accuracy and its step, the last, and the whole curve."""
        best_step, best = max(self.history, key=lambda h: h[1])
        return {"every_n_steps": self.every_n_steps, "best_knn_acc": best, "best_step": best_step,
                "last_knn_acc": self.history[-1][1], "last_step": self.history[-1][0],
                "history": self.history}

    def state_dict(self) -> dict:  # a resumed run keeps the curve of its first part
        return {"history": self.history}

    def load_state_dict(self, state: dict) -> None:
        self.history = [list(h) for h in state.get("history", [])]
