"""Where a model runs: the device a command is told to use, and whether it computes bf16 natively."""

import os

import torch

from ssl_zoo import cpu_precision
from ssl_zoo.errors import BadValue


def pick_device(name: str = "auto") -> torch.device:
    """`auto`: the GPU when there is one, else the CPU; otherwise the device named (cpu, cuda:1, ...)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise BadValue("device", f"device={name} is not a device; give device=auto, cpu or cuda[:<index>]") from None
    present = {"cpu": True, "cuda": torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count(),
               "mps": torch.backends.mps.is_available()}
    if not present.get(device.type, False):
        raise BadValue("device", f"device={name}: no such device on this machine ({torch.cuda.device_count()} CUDA "
                       "device(s)); give device=auto or device=cpu")
    return device


def memory_available() -> int:
    """Bytes of memory this machine can give now (Linux: MemAvailable; elsewhere: all of its memory)."""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def gigabytes(size: float) -> str:
    return f"{size / 1e9:,.1f} GB"


def computes_bf16(device: torch.device) -> bool:
    """Whether the device computes bf16 natively: a GPU that supports it, a CPU with AMX or AVX512-BF16."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_precision() == "bf16-mixed"
