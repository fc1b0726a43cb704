"""ssl-zoo: self-supervised learning for text, images and speech with one trainer and one probe."""

from pathlib import Path

__version__ = "0.1.0"


def config_dir() -> Path:
    """The Hydra config tree: shipped inside the installed package, or conf/ of a checkout."""
    packaged = Path(__file__).resolve().parent / "conf"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[1] / "conf"
