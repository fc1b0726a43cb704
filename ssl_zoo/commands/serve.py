"""`ssl-zoo serve`: one web page and a small JSON API to try trained GPT and BERT checkpoints.

    GET  /          the page (ssl_zoo/web/index.html: plain HTML + JS, nothing fetched from elsewhere)
    GET  /models    the loaded checkpoints (method, model, parameters, training data, steps) and the limits
    POST /generate  {model?, prompt, max_new_tokens, temperature, top_k, top_p, seed}: a GPT's continuation
                    as server-sent events, one `data: {"text": ...}` per piece as tokens are chosen, then
                    `event: done`. The same generate_text() as `ssl-zoo generate`: the same seed writes the
                    same text.
    POST /fill      {model?, text, top_k}: a BERT's candidates and probabilities for each [MASK]
    GET  /health    {"ok": true, "generating": generations running now, "finished", "stopped", "pieces_sent"}

Bad requests get a 4xx with {"error": one line, "field": the field at fault} and the server goes on.
Generation runs token by token in a worker thread, the streams taking turns (one token of each in
order), so that many clients share the model and a client that disconnects (or presses stop) ends
its generation at the next token.
"""

import json
import socket
import threading
import time
from dataclasses import asdict, dataclass
from importlib.resources import files
from typing import Any

import anyio
import torch
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict

from ssl_zoo.errors import BadValue, UserError
from ssl_zoo.eval.generate import SamplingSettings, fill_masks, generate_text, load_text_model

TASK_OF = {"gpt": "generate", "bert": "fill"}


@dataclass
class Limits:
    """What keeps a shared server up: every request is bounded in size and in work."""

    max_prompt_chars: int = 2000   # prompt (generate) and text (fill)
    max_new_tokens: int = 500
    max_top_k: int = 50            # candidates per [MASK]
    max_concurrent: int = 8        # generations running at once; one more is told to retry (503)
    max_body_bytes: int = 65536


@dataclass
class Served:
    name: str
    method: Any
    info: dict


class ServeError(Exception):
    """A request the server refuses: answered with `status` and {"error": message, "field": field}."""

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.message, self.field = status, message, field


# Request bodies: types, required fields and unknown fields are checked here (422 naming the field);
# ranges by SamplingSettings.check and the server's Limits, the same checks as the command line's.
class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    model: str | None = None       # a name from GET /models; default: the first GPT loaded
    prompt: str
    max_new_tokens: int = 100
    temperature: float = 0.8
    top_k: int | None = 50
    top_p: float | None = None
    seed: int = 0


class FillRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    model: str | None = None       # default: the first BERT loaded
    text: str
    top_k: int = 5


def load_models(checkpoints: list[str], device: str = "auto") -> dict[str, Served]:
    """The GPT and BERT checkpoints to serve, by name (`<method>-<data>`, numbered when a name repeats)."""
    from ssl_zoo.train import count_parameters

    served = {}
    for path in checkpoints:
        method = load_text_model(path, tuple(TASK_OF), device, command="serve")
        cfg = method.run_config
        name = base = f"{method.name}-{cfg.data.name}"
        for n in range(2, len(checkpoints) + 2):
            if name not in served:
                break
            name = f"{base}-{n}"
        served[name] = Served(name, method, {
            "name": name,
            "task": TASK_OF[method.name],
            "method": method.name,
            "model": cfg.model.name,
            "params": count_parameters(method),
            "data": cfg.data.name,
            "steps": method.trained_steps,
            "block_size": method.backbone.cfg.block_size,
            "tokenizer": method.tokenizer.kind,
            "checkpoint": str(path),
        })
    return served


_worker = threading.local()


def on_one_core(function, *args):
    """function(*args) in a worker thread whose torch runs on one core. OpenMP's thread count is per
    calling thread, and a second team per worker only competes for the same cores (measured on 2
    cores: a token 3x slower in a worker thread with two OpenMP threads than with one)."""
    if not getattr(_worker, "single", False):
        torch.set_num_threads(1)
        _worker.single = True
    return function(*args)


def sse(data: dict, event: str | None = None) -> str:
    """One server-sent event."""
    return (f"event: {event}\n" if event else "") + f"data: {json.dumps(data)}\n\n"


def create_app(models: dict[str, Served], limits: Limits = Limits()) -> FastAPI:
    # no /docs: FastAPI's docs page loads its scripts from a CDN; the schema is at /openapi.json
    app = FastAPI(title="ssl-zoo serve", docs_url=None, redoc_url=None)
    page = files("ssl_zoo").joinpath("web", "index.html").read_text(encoding="utf-8")
    running: set[tuple] = set()  # (client host, port) of every generation streaming now
    # The model computes one thing at a time (a token of some stream, or a fill), in turn: threads of one
    # process running torch side by side only contend for the GIL (measured: half the total tokens/s).
    compute = anyio.CapacityLimiter(1)

    async def computed(function, *args):
        return await anyio.to_thread.run_sync(on_one_core, function, *args, limiter=compute)
    counts = {"finished": 0, "stopped": 0, "pieces_sent": 0}  # since the server started

    @app.exception_handler(ServeError)
    async def refused(request: Request, error: ServeError):
        headers = {"Retry-After": "1"} if error.status == 503 else None
        return JSONResponse({"error": error.message, "field": error.field}, status_code=error.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError):
        problem = error.errors()[0]
        where = [str(part) for part in problem["loc"] if part != "body"]
        if problem["type"] == "json_invalid":
            field, message = "body", f"the body is not valid JSON ({problem.get('ctx', {}).get('error', 'parse error')})"
        elif problem["type"] in ("model_attributes_type", "dict_type") or not where:
            field, message = "body", "the body must be a JSON object, e.g. {\"prompt\": \"def main(\"}"
        else:
            field = where[0]
            message = f"{'.'.join(where)}: {problem['msg'].lower()}"
            if problem["type"] == "extra_forbidden":
                message = f"{field}: unknown field; the fields are: {', '.join(known_fields(request.url.path))}"
        return JSONResponse({"error": message, "field": field}, status_code=422)

    @app.middleware("http")
    async def bounded_body(request: Request, call_next):
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > limits.max_body_bytes:
            return JSONResponse({"error": f"the body is {size} bytes; this server takes at most {limits.max_body_bytes}",
                                 "field": "body"}, status_code=413)
        return await call_next(request)

    def pick(name: str | None, task: str) -> Served:
        """The model asked for, or the first one that can do `task`."""
        loaded = ", ".join(f"{m.name} ({m.info['method']})" for m in models.values())
        if name is None:
            for served in models.values():
                if served.info["task"] == task:
                    return served
            kind = "GPT" if task == "generate" else "BERT"
            raise ServeError(400, f"no {kind} checkpoint is loaded, and /{task} needs one (loaded: {loaded})", "model")
        if name not in models:
            raise ServeError(404, f"unknown model '{name}'; loaded: {loaded}", "model")
        served = models[name]
        if served.info["task"] != task:
            raise ServeError(400, f"model '{name}' is a {served.info['method'].upper()}: it does not {task}; "
                                  f"use /{served.info['task']} with it, or pick another (loaded: {loaded})", "model")
        return served

    def checked_text(text: str, field: str) -> str:
        if len(text) > limits.max_prompt_chars:
            raise ServeError(422, f"{field} is {len(text)} characters long; this server takes at most "
                                  f"{limits.max_prompt_chars}: shorten it", field)
        return text

    @app.get("/", response_class=HTMLResponse)
    async def index():
        return page

    @app.get("/models")
    async def list_models():
        return {"models": [m.info for m in models.values()], "limits": asdict(limits)}

    @app.get("/health")
    async def health():
        return {"ok": True, "generating": len(running), **counts}

    @app.post("/generate")
    async def generate(body: GenerateRequest, request: Request):
        served = pick(body.model, "generate")
        prompt = checked_text(body.prompt, "prompt")
        settings = SamplingSettings(body.max_new_tokens, body.temperature, body.top_k, body.top_p, body.seed)
        try:
            settings.check(limits.max_new_tokens)
            pieces = generate_text(served.method, prompt, settings)
        except BadValue as e:
            raise ServeError(422, str(e), e.field) from None
        except UserError as e:
            raise ServeError(422, str(e), "prompt") from None
        connection = (request.client.host, request.client.port) if request.client else None
        if connection in running:
            raise ServeError(429, "this connection is already generating: one generation per connection", None)
        if len(running) >= limits.max_concurrent:
            raise ServeError(503, f"the server is busy ({limits.max_concurrent} generations running); retry shortly")
        running.add(connection)
        return StreamingResponse(stream(pieces, settings, connection), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def stream(pieces, settings: SamplingSettings, connection):
        """Pieces of text as events. Each token is computed in a worker thread; when the client goes,
        the response is cancelled between tokens and the generator closed: no work is left running."""
        start, done = time.perf_counter(), False
        try:
            while (piece := await computed(next, pieces, None)) is not None:
                yield sse({"text": piece})
                counts["pieces_sent"] += 1
            seconds = time.perf_counter() - start
            done = True
            yield sse({"tokens": settings.max_new_tokens, "seconds": round(seconds, 3),
                       "tokens_per_second": round(settings.max_new_tokens / max(seconds, 1e-9), 1)}, "done")
        finally:
            pieces.close()
            running.discard(connection)
            counts["finished" if done else "stopped"] += 1

    @app.post("/fill")
    async def fill(body: FillRequest):
        served = pick(body.model, "fill")
        text = checked_text(body.text, "text")
        if not isinstance(body.top_k, int) or not 1 <= body.top_k <= limits.max_top_k:
            raise ServeError(422, f"top_k={body.top_k} is out of range; it must be a number between 1 and "
                                  f"{limits.max_top_k}", "top_k")
        try:
            candidates = await computed(fill_masks, served.method, text, body.top_k)
        except BadValue as e:
            raise ServeError(422, str(e), e.field) from None
        except UserError as e:
            raise ServeError(422, str(e), "text") from None
        filled = text
        for options in candidates:
            filled = filled.replace("[MASK]", options[0][0], 1)
        return {"model": served.name, "filled": filled,
                "masks": [[{"token": token, "prob": prob} for token, prob in options] for options in candidates]}

    def known_fields(path: str) -> list[str]:
        return list((GenerateRequest if path.endswith("generate") else FillRequest).model_fields)

    return app


def check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as e:
            raise UserError(f"cannot listen on {host}:{port} ({e.strerror}); pass another port, e.g. port={port + 1}") from None


def serve(checkpoints: list[str], host: str = "127.0.0.1", port: int = 8000, device: str = "auto",
          limits: Limits = Limits()) -> None:
    import uvicorn

    if not checkpoints:
        raise UserError("no checkpoint to serve; pass checkpoint=<run dir>/checkpoints/last.ckpt of a GPT or BERT run")
    check_port_free(host, port)
    models = load_models(checkpoints, device)
    for served in models.values():
        info = served.info
        print(f"  {info['name']}: {info['method']} {info['model']}, {info['params'] / 1e6:.2f}M params, "
              f"{info['steps']} steps on {info['data']}  ({info['checkpoint']})")
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"ssl-zoo serve: listening on {host}: anyone who can reach this machine can use these models")
    print(f"ssl-zoo serve: http://{host}:{port}/  (Ctrl+C stops)", flush=True)
    uvicorn.run(create_app(models, limits), host=host, port=port, log_level="warning")
