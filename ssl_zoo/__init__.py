"""ssl-zoo: self-supervised learning for text, images and speech with one trainer and one probe."""

from pathlib import Path

from omegaconf import OmegaConf

__version__ = "0.1.0"


def config_dir() -> Path:
    """The Hydra config tree: shipped inside the installed package, or conf/ of a checkout."""
    packaged = Path(__file__).resolve().parent / "conf"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[1] / "conf"


def cpu_precision() -> str:
    """`${cpu_precision:}` in conf/: bf16 autocast where this CPU computes bf16 natively (AMX or
    AVX512-BF16), full fp32 elsewhere (emulated bf16 is slower); measured in docs/benchmarks.md."""
    import torch

    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")  # private in torch.cpu: absent means no
    native = any(getattr(torch.cpu, name, lambda: False)() for name in checks)
    return "bf16-mixed" if native else "32-true"


OmegaConf.register_new_resolver("cpu_precision", cpu_precision, replace=True)
