"""RunRecord: what every checkpoint of a run carries besides Lightning's state (its config, training time, last metrics)."""

import time

from pytorch_lightning.callbacks import Callback

from ssl_zoo.checkpoint import CONFIG_KEY, FORMAT, FORMAT_KEY


class RunRecord(Callback):
    """Keeps the resolved config in every checkpoint, adds up training time across resumes and the
    settings each resume changed (their step, key, old and new value), keeps the
    last logged metrics (a run resumed after its last step, e.g. killed in the probe, logs none: it
    keeps the checkpoint's) and flushes metrics.csv with each checkpoint."""

    def __init__(self, config: dict, changes: list[dict] = (), at_step: int = 0):
        self.config, self.seconds, self._start, self._trainer = config, 0.0, None, None
        self.final_metrics: dict[str, float] = {}
        self.new_changes = [{"step": at_step, **change} for change in changes]  # what this resume changed
        self.changed = list(self.new_changes)  # and every resume before it (from the checkpoint)

    @property
    def final_loss(self) -> float | None:
        return self.final_metrics.get("train/loss")

    def setup(self, trainer, pl_module, stage):
        self._trainer = trainer

    def snapshot(self) -> None:
        """The metrics last logged, as numbers: read when a checkpoint is written and at the end (not
        at every step, which would wait for the GPU at every step)."""
        if self._trainer is not None and self._trainer.callback_metrics:
            self.final_metrics = {k: float(v) for k, v in self._trainer.callback_metrics.items()}

    def on_train_start(self, trainer, pl_module):
        self._start = time.perf_counter()

    def elapsed(self) -> float:
        return self.seconds + (time.perf_counter() - self._start if self._start else 0.0)

    def on_train_end(self, trainer, pl_module):
        self.seconds, self._start = self.elapsed(), None
        self.snapshot()

    def state_dict(self):
        self.snapshot()
        return {"seconds": self.elapsed(), "final_metrics": self.final_metrics, "changed_on_resume": self.changed}

    def load_state_dict(self, state):
        self.seconds = state["seconds"]
        self.changed = state.get("changed_on_resume", []) + self.new_changes
        old_loss = state.get("final_loss")  # what a checkpoint written before final_metrics were kept holds
        self.final_metrics = state.get("final_metrics") or ({"train/loss": old_loss} if old_loss is not None else {})

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        checkpoint[CONFIG_KEY], checkpoint[FORMAT_KEY] = self.config, FORMAT
        for logger in trainer.loggers:  # metrics.csv holds every row up to the checkpoint: a run killed after it loses none
            logger.save()
