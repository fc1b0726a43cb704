"""SIGINT and SIGTERM during training: the step under way finished, its checkpoint kept, then a clean stop."""

import signal
import threading
from pathlib import Path

from pytorch_lightning.callbacks import Callback


class RunInterrupted(Exception):
    """Training stopped by SIGINT or SIGTERM, its checkpoint saved: the message says how to continue."""


class StopOnSignal(Callback):
    """SIGINT (Ctrl-C) or SIGTERM (a scheduler's) during fit: the step under way is finished, its
    checkpoint saved to `path` as the periodic ones are (so that a resume is exact), then training
    stops; a second signal stops at once, as usual."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, path: Path):
        self.path, self.received, self._previous, self.step_at_start = path, None, {}, 0

    def on_fit_start(self, trainer, pl_module):
        if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
            self._previous = {s: signal.signal(s, self._note) for s in self.SIGNALS}

    def _note(self, signum, frame):
        if self.received is not None:  # asked twice: stop now
            self._restore()
            signal.raise_signal(signum)
        self.received = signal.Signals(signum).name

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.step_at_start = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        # Under gradient accumulation, only after a micro-batch that stepped the optimizer: a checkpoint
        # holds no gradients, so one taken between micro-batches would lose those already summed.
        stepped = trainer.global_step > self.step_at_start
        if self.received is not None and stepped and not trainer.should_stop:
            # beside last.ckpt until fit has ended (Lightning may still write last.ckpt on its way out)
            trainer.save_checkpoint(self.path.with_suffix(".stopping"), weights_only=False)
            trainer.should_stop = True

    def keep_checkpoint(self) -> None:
        """After fit: the checkpoint of the step under way at the signal becomes last.ckpt."""
        self.path.with_suffix(".stopping").replace(self.path)

    def _restore(self):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def teardown(self, trainer, pl_module, stage):  # the end of fit, whether it ended well or not
        self._restore()
