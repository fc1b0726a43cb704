"""The GPU check in one run (issue 20; about 6 minutes on an H200): every figure goes into one JSON file,
written again after each part, so that a part that fails or runs out of time leaves the others' figures.

    bash bench/gpu_prepare.sh                 # here, once: wheels the GPU machine lacks, Tiny Shakespeare (ignored folders)
    python bench/gpu_check.py --out gpu_check.json --shakespeare .gpu/input.txt           # on the GPU
    python bench/gpu_check.py --device cpu --tiny --out /tmp/gpu_check.json --shakespeare .gpu/input.txt   # rehearsal

Parts:
  peak    the bf16 matrix product's TFLOP/s on this device (8192^3, mean of 10 after 3 warm-ups): MFU's denominator,
          measured rather than taken from a datasheet
  gpt2    GPT training at GPT-2 small's shape (12 x 768, context 1024, vocabulary 50,304, batch 16), bf16 autocast,
          torch.compile, SDPA attention, fused AdamW: tokens/s and MFU of ssl-zoo's GPT step and of Hugging Face's
          GPT2LMHeadModel with the same settings (both models compiled, the loss outside), and the ratio. FLOPs per
          token as nanoGPT counts them: 6 N (N without the position table) + 12 L d T (attention)
  baby    nanoGPT's baby GPT on Tiny Shakespeare: `ssl-zoo train experiment=gpt_shakespeare_char compile=true`
          (5,000 steps): best and final validation loss, wall time
  simclr  bench/simclr_throughput.py --batch-size 512 --bf16: images/s end to end against lightly's recipe
  speech  bench/speech_features.py --batch-size 128 --bf16 --synthetic: the log-mel front end's share of a
          masked-speech and an APC step
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the other benches, as modules
sys.path.insert(0, str(HERE.parent))  # ssl_zoo from this checkout, installed or not

from text_throughput import timed  # noqa: E402

from ssl_zoo.atomic import atomic_write  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak(args, device) -> dict:
    n = 512 if args.tiny else 8192
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    seconds = timed(lambda: a @ b, 3, 10, device)
    return {"matmul": f"{n}^3 bf16", "tflops": 2 * n**3 / seconds / 1e12}


def gpt2(args, device, peak_tflops: float | None) -> dict:
    from text_throughput import hf_gpt2, ours
    from torch._dynamo.utils import counters

    from ssl_zoo.methods.gpt import GPT

    shape = (dict(vocab_size=512, block_size=64, n_layer=2, n_head=2, n_embd=64, batch_size=2) if args.tiny else
             dict(vocab_size=50304, block_size=1024, n_layer=12, n_head=12, n_embd=768, batch_size=16))
    s = argparse.Namespace(**shape)
    ids = torch.randint(0, s.vocab_size, (s.batch_size, s.block_size + 1), device=device)
    fused = device.type == "cuda"

    def step_of(model, loss):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=fused)

        def step():
            with torch.autocast(device.type, dtype=torch.bfloat16):
                value = loss()
            value.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return step

    gpt = GPT(ours(s, True, device)).to(device)
    gpt.backbone.compile()  # as `compile=true` does in ssl-zoo train
    hf = hf_gpt2(s, device)
    hf.compile()
    sides = {"ssl_zoo": step_of(gpt, lambda: gpt.ssl_step(ids)[0]),
             "hf": step_of(hf, lambda: F.cross_entropy(hf(input_ids=ids[:, :-1]).logits.flatten(0, 1).float(), ids[:, 1:].flatten()))}
    n_params = sum(p.numel() for p in gpt.backbone.parameters()) - gpt.backbone.pos_emb.weight.numel()
    flops_per_token = 6 * n_params + 12 * s.n_layer * s.n_embd * s.block_size
    out = {"shape": shape, "params_without_positions": n_params, "flops_per_token": flops_per_token}
    steps = 2 if args.tiny else 20
    for name, step in sides.items():
        graphs = counters["stats"]["unique_graphs"]
        started = time.perf_counter()
        step()  # the compilation
        sync(device)
        compile_s = time.perf_counter() - started
        tokens_s = s.batch_size * s.block_size / timed(step, 3, steps, device)
        mfu = flops_per_token * tokens_s / (peak_tflops * 1e12) if peak_tflops else None
        # graphs compiled for this side: more than a handful means recompilation inside the timed steps
        out[name] = {"tokens_s": tokens_s, "mfu": mfu, "first_step_s": compile_s, "graphs": counters["stats"]["unique_graphs"] - graphs}
        if device.type == "cuda":
            out[name]["max_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
            torch.cuda.reset_peak_memory_stats()
    out["ratio_ssl_zoo_over_hf"] = out["ssl_zoo"]["tokens_s"] / out["hf"]["tokens_s"]
    return out


def run(command: list[str], timeout: float, env: dict | None = None) -> str:
    """A part that is its own program: its output (stdout and stderr), or an error naming the tail."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=HERE.parent,
                          env={**os.environ, "PYTHONPATH": str(HERE.parent), "PYTHONUNBUFFERED": "1", **(env or {})})
    output = done.stdout + done.stderr
    if done.returncode:
        raise RuntimeError(f"exit code {done.returncode}: {output[-2000:]}")
    return output


def baby(args, device) -> dict:
    run_dir = Path(tempfile.mkdtemp(prefix="baby_"))
    settings = ["experiment=gpt_shakespeare_char", f"data.path={Path(args.shakespeare).resolve()}", f"hydra.run.dir={run_dir}",
                "compile=true"]
    if args.tiny:  # the same command, shrunk to a few CPU steps
        settings += ["trainer.accelerator=cpu", "trainer.precision=32-true", "trainer.max_steps=20", "trainer.val_check_interval=10",
                     "data.val_windows=8", "data.batch_size=4", "model.n_layer=1", "compile=false"]
    started = time.perf_counter()
    output = run([sys.executable, "-m", "ssl_zoo", "train", *settings], timeout=args.part_timeout)
    wall = time.perf_counter() - started
    rows = [line.split(",") for line in (run_dir / "metrics.csv").read_text().splitlines()]
    column = rows[0].index("val/loss")
    val = [(int(r[rows[0].index("step")]), float(r[column])) for r in rows[1:] if r[column]]
    results = json.loads((run_dir / "results.json").read_text())
    return {"command": "ssl-zoo train " + " ".join(settings), "wall_s": wall, "train_s": results["train"]["seconds"],
            "steps": results["train"]["steps"], "best_val_loss": min(v for _, v in val), "final_val_loss": val[-1][1],
            "val_curve": val, "output_tail": output[-1500:]}


def figures_of(output: str, pattern: str) -> list[list[float]]:
    """The numbers on each output line that matches pattern."""
    return [[float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", line.split(":", 1)[-1] if ":" in line else line)]
            for line in output.splitlines() if re.search(pattern, line)]


def simclr(args, device) -> dict:
    size = ["--batch-size", "16", "--steps", "1", "--warmup", "1", "--pipeline-steps", "2", "--workers", "1"] if args.tiny else \
        ["--batch-size", "512", "--steps", "20", "--warmup", "3", "--pipeline-steps", "20", "--workers", "8"]
    output = run([sys.executable, "bench/simclr_throughput.py", "--device", str(device), "--bf16", *size], timeout=args.part_timeout)
    (views,), (end,) = figures_of(output, r"^views only"), figures_of(output, r"^end to end")
    return {"views_img_s": {"ssl_zoo": views[0], "lightly": views[1], "ratio": views[2]},
            "end_to_end_img_s": {"ssl_zoo": end[0], "lightly": end[1], "ratio": end[2]}, "output": output[-1500:]}


def speech(args, device) -> dict:
    size = ["--batch-size", "4", "--batches", "2", "--steps", "1", "--warmup", "1"] if args.tiny else ["--batch-size", "128"]
    output = run([sys.executable, "bench/speech_features.py", "--device", str(device), "--bf16", "--synthetic", *size],
                 timeout=args.part_timeout)
    shares = {line.split()[0]: float(line.rstrip("%").split()[-1]) for line in output.splitlines()
              if line.strip().startswith(("masked_speech", "apc"))}
    return {"features_share_percent": shares, "output": output[-1500:]}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", default="gpu_check.json")
    p.add_argument("--shakespeare", default=".gpu/input.txt", help="Tiny Shakespeare's input.txt")
    p.add_argument("--parts", default="peak,gpt2,baby,simclr,speech")
    p.add_argument("--part-timeout", type=float, default=300, help="seconds for each part that is its own program")
    p.add_argument("--tiny", action="store_true", help="every part shrunk to seconds: a rehearsal of the script on a CPU")
    args = p.parse_args()
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    report = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__,
              "tiny": args.tiny, "parts": {}}
    for part in args.parts.split(","):
        started = time.perf_counter()
        try:
            if part == "gpt2":
                figures = gpt2(args, device, (report["parts"].get("peak") or {}).get("tflops"))
            else:
                figures = {"peak": peak, "baby": baby, "simclr": simclr, "speech": speech}[part](args, device)
        except Exception as error:  # one part's failure is a figure too; the others still run
            figures = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()[-3000:]}
        figures["part_s"] = time.perf_counter() - started
        report["parts"][part] = figures
        atomic_write(args.out, json.dumps(report, indent=1))
        shown = {k: v for k, v in figures.items() if k not in ("output", "output_tail", "traceback", "val_curve")}
        print(part, json.dumps(shown, default=str), flush=True)
    ok = [part for part, f in report["parts"].items() if "error" not in f]
    print(f"{len(ok)} of {len(report['parts'])} parts gave figures; written: {args.out}")
    return 0 if len(ok) == len(report["parts"]) else 1


if __name__ == "__main__":
    sys.exit(main())
