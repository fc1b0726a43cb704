"""The `logger=` group: metrics.csv always (plots, compare and resume read it), and one of TensorBoard,
Weights & Biases or MLflow beside it, each writing inside the run folder unless told otherwise."""

import csv
import netrc
import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import CSVLogger, Logger

from ssl_zoo.atomic import check_can_write
from ssl_zoo.errors import UserError
from ssl_zoo.run.folder import RunFolder
from ssl_zoo.settings import FLAG, Matches, Nested, OneOf, Range, find_class

# the loggers' flags (Lightning's classes declare nothing of ours; offline=auto is ours, see `where`)
NAME = Matches(r"\s*\S.*", "a name (a non-empty string)", nullable=True)
LOGGER_SETTINGS = {"wandb": Nested({"offline": OneOf(("auto", True, False)), "anonymous": OneOf((True, False, None)),
                                    "project": NAME, "name": NAME}),
                   "tensorboard": Nested({"default_hp_metric": FLAG, "log_graph": FLAG, "flush_secs": Range(1, whole=True),
                                           "max_queue": Range(1, whole=True)}),
                   "mlflow": Nested({"synchronous": OneOf((True, False, None)),
                                     "experiment_name": Matches(r"\s*\S.*", "a name (a non-empty string)")})}
PACKAGES = {"tensorboard": "tensorboardX", "wandb": "wandb", "mlflow": "mlflow-skinny"}  # what pip installs for each


class ContinuedCSVLogger(CSVLogger):
    """Lightning's CSV logger (<run dir>/metrics.csv) that, on a resume from step S, keeps the rows the
    interrupted run logged before S (those after it are logged again) instead of starting the file
    anew: the file ends as the uninterrupted run's would."""

    def __init__(self, run_dir: Path, resume_step: int | None = None):
        super().__init__(run_dir, name="", version="")
        path, self._kept = RunFolder(run_dir).metrics, []
        if resume_step is not None and path.is_file():
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
            self._kept = [{k: v for k, v in row.items() if v != ""} for row in rows
                          if str(row.get("step", "")).isdigit() and int(row["step"]) < resume_step]

    @property
    def experiment(self):
        writer = super().experiment  # created on first use: it removes the old metrics.csv
        if self._kept:
            writer.metrics[:0], self._kept = self._kept, []  # written back with the first new rows
        return writer


def wandb_key_set() -> bool:
    """True when Weights & Biases has an API key: WANDB_API_KEY, or a `wandb login` entry in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def where(name: str, run_dir: Path, settings: dict) -> dict:
    """The folder arguments that keep each logger's files in the run folder (unless the settings name one)."""
    if name == "mlflow":
        if settings.get("tracking_uri"):
            return {}
        # MLflow 3 refuses a file store unless asked for: a folder per run needs no database server.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        return {"tracking_uri": (run_dir / "mlruns").resolve().as_uri()}
    folder = {} if settings.get("save_dir") else {"save_dir": str(run_dir)}
    if name == "wandb":
        offline = settings.get("offline", "auto")
        return {**folder, "offline": not wandb_key_set() if offline == "auto" else bool(offline)}
    return folder


def not_importable(name: str, target) -> str:
    return (f"logger.{name}._target_={target} is not a class that can be imported; give a Lightning logger's class "
            f"(e.g. pytorch_lightning.loggers.CSVLogger), or logger={', '.join(PACKAGES)}")


def check_loggers(cfg: DictConfig) -> None:
    """What would fail only once training starts, checked at start-up: a logger's own folder (save_dir) that
    cannot be written, Weights & Biases online without an API key, an MLflow server (tracking_uri) that does not
    answer (any HTTP status will do; MLflow itself retries for minutes, then fails with a traceback)."""
    for name, node in (cfg.get("logger") or {}).items():
        if OmegaConf.is_dict(node) and node.get("_target_") and name not in PACKAGES:  # a class of one's own
            if find_class(node._target_) is None:
                raise UserError(not_importable(name, node._target_))
        if OmegaConf.is_dict(node) and node.get("save_dir"):
            check_can_write(Path(str(node.save_dir)), f"logger.{name}.save_dir", folder=True)
    if OmegaConf.select(cfg, "logger.wandb.offline", default=None) is False and not wandb_key_set():
        raise UserError("logger.wandb.offline=false needs a Weights & Biases API key (wandb login, or WANDB_API_KEY); "
                        "log in first, or leave offline=auto (online with a key, offline without)")
    uri = str(OmegaConf.select(cfg, "logger.mlflow.tracking_uri", default=None) or "")
    if urlparse(uri).scheme not in ("http", "https"):
        return
    try:
        urllib.request.urlopen(uri, timeout=5).close()
    except urllib.error.HTTPError:
        return  # it answered
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise UserError(f"logger.mlflow.tracking_uri={uri} cannot be reached ({reason}); start the MLflow server there, or drop "
                        "tracking_uri (the run is then logged in <run dir>/mlruns)") from None


def make_loggers(cfg: DictConfig, run_dir: Path, resume_step: int | None = None) -> list[Logger]:
    """[metrics.csv, and the logger= choice's logger if any]."""
    loggers: list[Logger] = [ContinuedCSVLogger(run_dir, resume_step)]
    for name, node in (cfg.get("logger") or {}).items():
        if not isinstance(node, DictConfig) or "_target_" not in node:  # +logger.csv.x=1: metrics.csv is not a logger= choice
            raise UserError(f"logger.{name} is not a logger of this run (metrics.csv is always written, with Lightning's "
                            f"defaults); drop logger.{name}.*, or choose one with logger={', '.join(PACKAGES)}")
        settings = OmegaConf.to_container(node, resolve=True)
        try:
            loggers.append(instantiate(node, **where(name, run_dir, settings)))
        except (InstantiationException, ModuleNotFoundError) as e:
            cause = e.__cause__ or e
            if name not in PACKAGES and "Error locating target" in str(e):
                raise UserError(not_importable(name, settings.get("_target_"))) from None
            if isinstance(cause, ModuleNotFoundError) or "not available" in str(cause) or "install" in str(cause).lower():
                raise UserError(f"logger={name} needs the {PACKAGES.get(name, name)} package; pip install "
                                f"{PACKAGES.get(name, name)} (or pip install 'ssl-zoo[loggers]'), or use logger=csv") from None
            raise UserError(f"logger={name} could not start: {str(cause).splitlines()[0]}; check its settings "
                            f"(logger.{name}.<name>=...)") from None
    return loggers
