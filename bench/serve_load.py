"""Load check of `ssl-zoo serve` on loopback: N concurrent streaming clients for a fixed time.

A real server (`python -m ssl_zoo serve`, a subprocess) and N clients (httpx, asyncio) that each send
/generate requests one after another until the time is up. Reports tokens/s per client and in total,
p50 / p95 time to first token, and how many requests failed (a non-200 answer, a broken stream, an `error`
event or a stream without its `done` event). The reference, measured in the same run: the same
generator called in process, one stream at a time, with no server (ratio = served total tokens/s / in-process tokens/s).

    python bench/serve_load.py --checkpoint outputs/gpt-python_stdlib/.../checkpoints/last.ckpt
    python bench/serve_load.py                 # first trains a GPT briefly (transformer_tiny, 300 steps)

Bounded: --clients (1,8,16: one load run each), --seconds (30), --max-new-tokens (64) per request; the server listens on
127.0.0.1 only.
"""

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

PROMPTS = ["def main(", "import os\n", "class Parser:\n    ", "    return self.", "# Copyright", "for item in "]


def quick_gpt(folder: Path) -> Path:
    """A GPT trained briefly on the embedded Python corpus, for a bench run without --checkpoint."""
    subprocess.run([sys.executable, "-m", "ssl_zoo", "train", "method=gpt", "trainer.max_steps=300", "probe.enabled=false",
                    f"hydra.run.dir={folder}"], check=True, stdout=subprocess.DEVNULL)
    return folder / "checkpoints" / "last.ckpt"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def client(url: str, number: int, deadline: float, max_new_tokens: int, record: dict):
    """Requests one after another until the deadline; each answer streamed to its end."""
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        request = 0
        while time.perf_counter() < deadline:
            body = {"prompt": PROMPTS[(number + request) % len(PROMPTS)], "max_new_tokens": max_new_tokens,
                    "temperature": 0.8, "top_k": 50, "seed": 1000 * number + request}
            request += 1
            sent, first, done = time.perf_counter(), None, None
            try:
                async with http.stream("POST", "/generate", json=body) as response:
                    if response.status_code != 200:
                        record["failed"].append(f"HTTP {response.status_code}: {(await response.aread())[:200]!r}")
                        continue
                    event = "message"
                    async for line in response.aiter_lines():
                        if line.startswith("data: ") and first is None:
                            first = time.perf_counter() - sent
                        if line.startswith("event: "):
                            event = line[7:]
                        elif line.startswith("data: ") and event == "done":
                            done = json.loads(line[6:])
                        elif line.startswith("data: ") and event == "error":
                            done = "the server said: " + json.loads(line[6:])["error"]
            except httpx.HTTPError as e:
                record["failed"].append(f"{type(e).__name__}: {e}")
                continue
            if not isinstance(done, dict):
                record["failed"].append(done or "stream ended without its done event")
                continue
            record["ttft"].append(first)
            record["tokens"][number] += done["tokens"]
            record["requests"] += 1


def in_process_reference(checkpoint: Path, seconds: float, max_new_tokens: int) -> float:
    """tokens/s of the same generator called directly, one stream at a time."""
    from ssl_zoo.infer.load import load_text_model
    from ssl_zoo.infer.text import SamplingSettings, generate_text

    method = load_text_model(str(checkpoint), "gpt", "cpu")
    tokens, start, n = 0, time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        settings = SamplingSettings(max_new_tokens, 0.8, 50, None, n)
        for _ in generate_text(method, PROMPTS[n % len(PROMPTS)], settings):
            pass
        tokens, n = tokens + max_new_tokens, n + 1
    return tokens / (time.perf_counter() - start)


def load_run(url: str, clients: int, seconds: float, max_new_tokens: int) -> dict:
    """`clients` clients for `seconds`: tokens per client, times to first token, failures, wall time."""
    record = {"ttft": [], "tokens": [0] * clients, "requests": 0, "failed": []}

    async def load():
        deadline = time.perf_counter() + seconds
        await asyncio.gather(*(client(url, n, deadline, max_new_tokens, record) for n in range(clients)))

    start = time.perf_counter()
    asyncio.run(load())
    record["wall"] = time.perf_counter() - start
    return record


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="a GPT checkpoint (default: train one briefly)")
    p.add_argument("--clients", default="1,8,16", help="client counts, one load run each (comma-separated)")
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--engine", default="process", choices=["process", "thread"], help="where the server generates")
    args = p.parse_args()
    counts = [int(c) for c in args.clients.split(",")]

    with tempfile.TemporaryDirectory() as folder:
        checkpoint = Path(args.checkpoint) if args.checkpoint else quick_gpt(Path(folder) / "gpt")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen([sys.executable, "-m", "ssl_zoo", "serve", f"checkpoint={checkpoint}", f"port={port}",
                                   f"limits.max_concurrent={max(counts)}", f"engine={args.engine}"], stdout=subprocess.DEVNULL)
        try:
            for _ in range(600):
                try:
                    model = httpx.get(f"{url}/models", timeout=1).json()["models"][0]
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            else:
                raise SystemExit("the server did not start within a minute")
            runs = {n: load_run(url, n, args.seconds, args.max_new_tokens) for n in counts}
            health = httpx.get(f"{url}/health").json()
        finally:
            server.terminate()
            server.wait(30)
        reference = in_process_reference(checkpoint, min(args.seconds, 10), args.max_new_tokens)

    print(f"model: {model['name']} ({model['model']}, {model['params'] / 1e6:.2f}M params); engine={args.engine}; {args.seconds:.0f} s per run, "
          f"{args.max_new_tokens} new tokens per request; server after: {health}")
    print(f"reference, in process, one stream, no server: {reference:.1f} tokens/s")
    print("clients | requests | failed | tokens/s in total | per client (min - max) | first token p50 / p95 ms | ratio to one stream in process")
    for n, record in runs.items():
        per_client = [t / record["wall"] for t in record["tokens"]]
        total = sum(record["tokens"]) / record["wall"]
        ttft = sorted(record["ttft"]) or [float("nan")]
        pct = lambda q: ttft[min(len(ttft) - 1, int(q * len(ttft)))] * 1000  # noqa: E731
        print(f"{n:7d} | {record['requests']:8d} | {len(record['failed']):6d} | {total:17.1f} | "
              f"{statistics.mean(per_client):6.1f} ({min(per_client):.1f} - {max(per_client):.1f}) | "
              f"{pct(0.5):6.0f} / {pct(0.95):6.0f} | {total / reference:.2f}")
        for problem in record["failed"][:3]:
            print(f"  failed: {problem}")


if __name__ == "__main__":
    main()
