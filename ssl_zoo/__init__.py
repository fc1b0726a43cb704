"""ssl-zoo: self-supervised learning for text, images and speech with one trainer and one probe."""

from pathlib import Path

__version__ = "0.1.0"


def config_dir() -> Path:
    """The Hydra config tree: shipped inside the installed package, or conf/ of a checkout."""
    packaged = Path(__file__).resolve().parent / "conf"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[1] / "conf"


def cpu_precision() -> str:
    """bf16-mixed where this CPU computes bf16 natively (AMX or AVX512-BF16), 32-true elsewhere (emulated
    bf16 is slower): where trainer.precision=auto may consider bf16 at all (ssl_zoo/run/precision.py)."""
    import torch

    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private in torch.cpu: absent means no
    native = any(getattr(torch.cpu, name, lambda: False)() for name in checks)
    return "bf16-mixed" if native else "32-true"
