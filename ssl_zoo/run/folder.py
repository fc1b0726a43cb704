"""The run folder's layout, owned here: every reader and writer of a run asks this module for its paths.

    <run dir>/
      config.yaml              every setting, resolved (what `compare` pools runs by)
      metrics.csv              the training curves (Lightning's CSV logger writes this name)
      results.json             the figures (results.py)
      checkpoints/last.ckpt    the latest checkpoint, resumable (checkpoint.py)
"""

from dataclasses import dataclass
from pathlib import Path

CONFIG = "config.yaml"
METRICS = "metrics.csv"
RESULTS = "results.json"
CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"


@dataclass(frozen=True)
class RunFolder:
    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    @classmethod
    def of_checkpoint(cls, checkpoint: str | Path) -> "RunFolder":
        """The run a checkpoint belongs to: <run dir>/checkpoints/last.ckpt, or a checkpoint kept beside its results."""
        path = Path(checkpoint)
        return cls(path.parent.parent if path.parent.name == CHECKPOINTS else path.parent)

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def metrics(self) -> Path:
        return self.root / METRICS

    @property
    def results(self) -> Path:
        return self.root / RESULTS

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / LAST_CHECKPOINT

    def beside(self, name: str) -> Path:
        """Another file of the run (embeddings.png, results_<data>.json, ...)."""
        return self.root / name
