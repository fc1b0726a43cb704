"""`trainer.precision=auto`: bf16 autocast where it is faster for this model and batch, fp32 otherwise.

On a GPU that computes bf16, bf16-mixed. On a CPU that does not compute bf16 natively (no AMX, no
AVX512-BF16), 32-true: emulated bf16 is slower. On a CPU that does, the answer depends on the shapes
(measured, docs/benchmarks.md: at 4 x 128 bf16 is no faster, at 6 x 384 it is; MAE's ViT is slower in
bf16 on an AVX512-BF16 CPU without AMX), so a few training steps of this very method on one real batch
are timed in each precision, once: the choice is kept in the cache, keyed by the CPU, torch, the
method, the model and the batch's shapes. bf16 must win by `MARGIN` to be chosen (it rounds; fp32 is
the reference). The choice and its timings go into results.json (extra.precision_choice).
"""

import copy
import json
import platform
import time
import warnings

import torch
from omegaconf import DictConfig, open_dict

from ssl_zoo.data.base import cache_root, digest
from ssl_zoo.atomic import atomic_write
from ssl_zoo.device import computes_bf16

MARGIN = 0.8  # bf16 is chosen when its step takes under 80% of fp32's: the timed forward and backward
# leave out the optimizer and the data, and GPT at 4 x 128 timed at 0.89 trained no faster (grid, seed 0)
STEPS = 3  # timed steps per precision, after one warm-up step
TIMINGS = 2  # in the cache key: bumped when the code changes what the two precisions cost (2: attention in bf16
# on the CPU by explicit matmuls, nn/transformer.py), so that older timings are not reused


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def step_seconds(method, inputs, bf16: bool) -> float:
    """Seconds per forward + backward of the method's loss on inputs (min of STEPS, after a warm-up)."""
    times = []
    for i in range(STEPS + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. Lightning's: self.log() without a Trainer
            loss, _ = method.ssl_step(inputs)
        loss.backward()
        method.zero_grad(set_to_none=True)
        if i:
            times.append(time.perf_counter() - start)
    return min(times)


def tensor_shapes(inputs) -> list:
    """The shapes and dtypes of the tensors in a batch's inputs (a tensor, a list, or a batch type)."""
    if torch.is_tensor(inputs):
        return [list(inputs.shape), str(inputs.dtype)]
    parts = inputs if isinstance(inputs, (list, tuple)) else list(getattr(inputs, "__dict__", {}).values())
    return [tensor_shapes(x) for x in parts if torch.is_tensor(x) or isinstance(x, (list, tuple))]


def choose_precision(cfg, method, datamodule) -> dict:
    """{"precision": the Lightning precision to train with, "source": how it was chosen, and the step
    times when measured}."""
    if cfg.trainer.accelerator in ("gpu", "cuda") or (cfg.trainer.accelerator == "auto" and torch.cuda.is_available()):
        return {"precision": "bf16-mixed" if computes_bf16(torch.device("cuda")) else "32-true", "source": "GPU: bf16 where it computes it"}
    if not computes_bf16(torch.device("cpu")):
        return {"precision": "32-true", "source": "this CPU does not compute bf16 natively"}
    if str(cfg.trainer.get("devices", 1)) != "1":  # every process must choose the same
        return {"precision": "bf16-mixed", "source": "this CPU computes bf16 natively (several processes: not timed)"}
    inputs, _ = next(iter(datamodule.train_dataloader()))  # the datamodule is set up (build.for_training)
    key = digest(TIMINGS, cpu_name(), torch.__version__, cfg.method.name, str(method.backbone), tensor_shapes(inputs),
                 torch.get_num_threads())
    path = cache_root(None) / "precision" / f"{key}.json"
    try:  # the timings are kept, the choice made from them now (by today's MARGIN)
        timed, source = json.loads(path.read_text()), "measured earlier on this CPU (cached)"
    except (OSError, ValueError):
        probe = copy.deepcopy(method).train()  # the run's own weights, generators and statistics stay untouched
        timed = {"fp32_step_s": round(step_seconds(probe, inputs, False), 4),
                 "bf16_step_s": round(step_seconds(probe, inputs, True), 4), "cpu": cpu_name()}
        atomic_write(path, json.dumps(timed))
        source = f"measured: {STEPS} steps each on this batch"
    faster = timed["bf16_step_s"] < MARGIN * timed["fp32_step_s"]
    return {"precision": "bf16-mixed" if faster else "32-true", **timed, "source": source}


def settle_precision(cfg: DictConfig, method, datamodule) -> tuple[DictConfig, dict]:
    """With trainer.precision=auto: a new config whose trainer.precision is choose_precision's answer,
    and {"precision_choice": how it was chosen} for results.json; with a precision given, (cfg, {})."""
    if cfg.trainer.precision != "auto":
        return cfg, {}
    choice = choose_precision(cfg, method, datamodule)
    settled = copy.deepcopy(cfg)
    with open_dict(settled):
        settled.trainer.precision = choice["precision"]
    return settled, {"precision_choice": choice}
