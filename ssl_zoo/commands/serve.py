"""`ssl-zoo serve`: one web page and a small JSON API to try trained GPT and BERT checkpoints.

    GET  /          the page (ssl_zoo/web/index.html: plain HTML + JS, nothing fetched from elsewhere)
    GET  /models    the loaded checkpoints (method, model, parameters, training data, steps, the weights'
                    precision) and the limits
    POST /generate  {model?, prompt, max_new_tokens, temperature, top_k, top_p, seed}: a GPT's continuation
                    as server-sent events, one `data: {"text": ...}` per piece as tokens are chosen, then
                    `event: done` (`event: error` with {"error": why} if generation failed). The same
                    generate_text() as `ssl-zoo generate`: the same seed writes the same text (at the
                    same precision=; fp32, the default, also batched with others).
    POST /fill      {model?, text, top_k}: a BERT's candidates and probabilities for each [MASK]
    GET  /health    {"ok": true, "generating": generations running now, "finished", "stopped", "pieces_sent"}

Bad requests get a 4xx with {"error": one line, "field": the field at fault} and the server goes on:
whatever a request fails with is turned into that answer in one place (`refusal`). Generation is
continuously batched (infer/batcher.py, ContinuousBatcher) by each GPT's engine (infer/engine.py: a
process of its own with engine=process, `ssl-zoo serve`'s default, or a thread): it computes the next token of every live stream in one forward pass, streams join
and leave between steps, and a client that disconnects (or presses stop) leaves at the next step. The
handlers share one `Server` (app.state.server): the models, the limits, the engines and what is running.
"""

import errno
import json
import re
import socket
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any

import anyio
import torch
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from omegaconf import DictConfig, OmegaConf
from pydantic import BaseModel, ConfigDict
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

from ssl_zoo.build import require_values
from ssl_zoo.errors import BadValue, UserError, check_range
from ssl_zoo.infer.engine import ENGINES, Engine
from ssl_zoo.infer.load import load_text_model
from ssl_zoo.infer.text import MAX_NEW_TOKENS, SamplingSettings, TextPieces, fill_masks, prompt_ids, top_1
from ssl_zoo.results import encoder_parameters
from ssl_zoo.settings import Matches, Range

TASK_OF = {"gpt": "generate", "bert": "fill"}
TEXT_FIELD = {"generate": "prompt", "fill": "text"}  # the field a request's text is in


@dataclass
class Limits:
    """What keeps a shared server up: every request is bounded in size and in work."""

    max_prompt_chars: Annotated[int, Range(1, whole=True)] = 2000   # prompt (generate) and text (fill)
    max_new_tokens: Annotated[int, Range(1, MAX_NEW_TOKENS, whole=True)] = 500  # within what one request may ask (infer.text)
    max_top_k: Annotated[int, Range(1, whole=True)] = 50            # candidates per [MASK]
    max_concurrent: Annotated[int, Range(1, whole=True)] = 8        # generations running at once; one more is told to retry (503)
    max_body_bytes: Annotated[int, Range(1, whole=True)] = 65536


@dataclass
class Served:
    name: str
    method: Any
    info: dict
    load: tuple = ()  # (checkpoint, device, precision): how an engine process loads it again


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


REQUESTS = {"generate": GenerateRequest, "fill": FillRequest}


def load_models(checkpoints: list[str], device: str = "auto", precision: str = "32") -> dict[str, Served]:
    """The GPT and BERT checkpoints to serve, by name (`<method>-<data>`, numbered when a name repeats)."""
    served = {}
    for path in checkpoints:
        method = load_text_model(path, tuple(TASK_OF), device, command="serve", precision=precision)
        cfg = method.run_config
        name = base = f"{method.name}-{cfg.data.name}"
        for n in range(2, len(checkpoints) + 2):
            if name not in served:
                break
            name = f"{base}-{n}"
        served[name] = Served(name, method, load=(str(path), device, precision), info={
            "name": name,
            "task": TASK_OF[method.name],
            "method": method.name,
            "model": cfg.model.name,
            "params": encoder_parameters(method),
            "data": cfg.data.name,
            "steps": method.trained_steps,
            "block_size": method.backbone.cfg.block_size,
            "tokenizer": method.tokenizer.kind,
            "checkpoint": str(path),
            "precision": str(next(method.parameters()).dtype).removeprefix("torch."),
        })
    return served


_worker = threading.local()


def on_one_core(function, *args):
    """function(*args) in a worker thread whose torch runs on one core. OpenMP's thread count is per
    calling thread, and a second team per worker only competes for the same cores (see
    docs/benchmarks.md, serving)."""
    if not getattr(_worker, "single", False):
        torch.set_num_threads(1)
        _worker.single = True
    return function(*args)


def sse(data: dict, event: str | None = None) -> str:
    """One server-sent event."""
    return (f"event: {event}\n" if event else "") + f"data: {json.dumps(data)}\n\n"


class Server:
    """What the handlers share: the models and limits, each GPT's generation engine, the generations
    streaming now, counts since the start, and a limiter that lets the BERTs fill one text at a time (in a
    worker thread: threads of one process running torch side by side only contend for the GIL)."""

    def __init__(self, models: dict[str, Served], limits: Limits, engine: str = "thread"):
        self.models, self.limits, self.engine_kind = models, limits, engine
        self.page = files("ssl_zoo").joinpath("web", "index.html").read_text(encoding="utf-8")
        self.running: set[tuple] = set()  # (client host, port) of every generation streaming now
        self.counts = {"finished": 0, "stopped": 0, "pieces_sent": 0}
        self.compute = anyio.CapacityLimiter(1)
        self.engines: dict[str, Engine] = {}

    async def computed(self, function, *args):
        return await anyio.to_thread.run_sync(on_one_core, function, *args, limiter=self.compute)

    def engine(self, served: Served) -> Engine:
        if served.name not in self.engines:  # a batch of max_concurrent rows: every stream that may run at once
            self.engines[served.name] = Engine(served, self.limits.max_concurrent, self.engine_kind)
        return self.engines[served.name]

    async def start_engines(self) -> None:
        """Every GPT's engine, started (side by side) and loaded before the first request is taken."""
        for ready in [self.engine(s).attach() for s in self.models.values() if s.info["task"] == "generate"]:
            await ready

    def close(self) -> None:
        for engine in self.engines.values():
            engine.close()
        self.engines.clear()  # an app started again gets engines of its own

    def pick(self, name: str | None, task: str) -> Served:
        """The model asked for, or the first one that can do `task`."""
        loaded = ", ".join(f"{m.name} ({m.info['method']})" for m in self.models.values())
        if name is None:
            for served in self.models.values():
                if served.info["task"] == task:
                    return served
            kind = "GPT" if task == "generate" else "BERT"
            raise ServeError(400, f"no {kind} checkpoint is loaded, and /{task} needs one (loaded: {loaded})", "model")
        if name not in self.models:
            raise ServeError(404, f"unknown model '{name}'; loaded: {loaded}", "model")
        served = self.models[name]
        if served.info["task"] != task:
            raise ServeError(400, f"model '{name}' is a {served.info['method'].upper()}: it does not {task}; "
                                  f"use /{served.info['task']} with it, or pick another (loaded: {loaded})", "model")
        return served

    def checked_text(self, text: str, field: str) -> str:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:  # JSON may spell a lone surrogate ("\ud800"), which is no character
            raise ServeError(400, f"{field} holds U+{ord(text[e.start]):04X} at {e.start}, a lone surrogate that is not "
                                  "a character; send valid Unicode", field) from None
        if len(text) > self.limits.max_prompt_chars:
            raise ServeError(422, f"{field} is {len(text)} characters long; this server takes at most "
                                  f"{self.limits.max_prompt_chars}: shorten it", field)
        return text

    def start_stream(self, connection) -> None:
        if connection in self.running:
            raise ServeError(429, "this connection is already generating: one generation per connection", None)
        if len(self.running) >= self.limits.max_concurrent:
            raise ServeError(503, f"the server is busy ({self.limits.max_concurrent} generations running); retry shortly")
        self.running.add(connection)

    async def stream(self, engine: Engine, served: Served, ids: list[int], settings: SamplingSettings, connection):
        """Pieces of text as events, as the engine delivers the stream's tokens, then `done` (or `error`
        if the engine failed). When the client goes, the response is cancelled and the stream leaves the
        batch at its next step: no work is left."""
        start, done, key = time.perf_counter(), False, None
        pieces = TextPieces(served.method.tokenizer)
        try:
            key, tokens = engine.submit(ids, settings)
            made = 0
            while (token := await tokens.get()) is not None:
                made += 1
                if piece := pieces.add(token):
                    yield sse({"text": piece})
                    self.counts["pieces_sent"] += 1
            if piece := pieces.rest():
                yield sse({"text": piece})
                self.counts["pieces_sent"] += 1
            if made < settings.max_new_tokens:  # the engine failed or stopped: the client is told, not left hanging
                yield sse({"error": engine.stopped or "the generation failed: see the server's log"}, "error")
                return
            seconds = time.perf_counter() - start
            done = True
            yield sse({"tokens": settings.max_new_tokens, "seconds": round(seconds, 3),
                       "tokens_per_second": round(settings.max_new_tokens / max(seconds, 1e-9), 1)}, "done")
        finally:
            self.running.discard(connection)
            self.counts["finished" if done else "stopped"] += 1
            if key is not None:
                engine.cancel(key)


def server_of(request: Request) -> Server:
    return request.app.state.server


router = APIRouter()


@router.get("/", response_class=HTMLResponse)
async def index(request: Request):
    return server_of(request).page


@router.get("/models")
async def list_models(request: Request):
    server = server_of(request)
    return {"models": [m.info for m in server.models.values()], "limits": asdict(server.limits)}


@router.get("/health")
async def health(request: Request):
    server = server_of(request)
    return {"ok": True, "generating": len(server.running), **server.counts}


@router.post("/generate")
async def generate(body: GenerateRequest, request: Request):
    server = server_of(request)
    served = server.pick(body.model, "generate")
    prompt = server.checked_text(body.prompt, "prompt")
    settings = SamplingSettings(body.max_new_tokens, body.temperature, body.top_k, body.top_p, body.seed)
    settings.check(server.limits.max_new_tokens)
    ids = prompt_ids(served.method, prompt)  # the prompt is encoded (and checked) now
    engine = server.engine(served)
    if engine.stopped:
        raise ServeError(503, engine.stopped)
    connection = (request.client.host, request.client.port) if request.client else None
    server.start_stream(connection)
    # The background task runs when the response ends, also when the client left before the first
    # token (then the stream's own `finally` never runs): /health counts live generations only.
    return StreamingResponse(server.stream(engine, served, ids, settings, connection), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
                             background=BackgroundTask(server.running.discard, connection))


@router.post("/fill")
async def fill(body: FillRequest, request: Request):
    server = server_of(request)
    served = server.pick(body.model, "fill")
    text = server.checked_text(body.text, "text")
    check_range("top_k", body.top_k, 1, server.limits.max_top_k)
    candidates = await server.computed(fill_masks, served.method, text, body.top_k)
    return {"model": served.name, "filled": top_1(text, candidates),
            "masks": [[{"token": token, "prob": prob} for token, prob in options] for options in candidates]}


def refusal(error: Exception, path: str) -> ServeError:
    """Whatever a request failed with, as the answer the server gives: status, one line, field at fault."""
    route = path.rstrip("/").rsplit("/", 1)[-1]  # generate | fill
    if isinstance(error, ServeError):
        return error
    if isinstance(error, BadValue):  # a value out of range: the same check as the command line's
        return ServeError(422, str(error), error.field)
    if isinstance(error, UserError):  # the text itself (characters the vocabulary never saw, no [MASK], ...)
        return ServeError(422, str(error), TEXT_FIELD.get(route))
    if isinstance(error, StarletteHTTPException):  # routing (404, 405), or FastAPI's 400 around a failed body read
        if isinstance(error.__cause__, ServeError):  # the body grew past the limit while it was read
            return error.__cause__
        detail = {404: f"no such page: {path}; the API is GET /models, GET /health, POST /generate, POST /fill",
                  405: f"{path} does not take this method"}.get(error.status_code, str(error.detail))
        return ServeError(error.status_code, detail, None)
    problem = error.errors()[0]  # RequestValidationError: pydantic's first complaint
    where = [str(part) for part in problem["loc"] if part != "body"]
    if problem["type"] == "json_invalid":
        return ServeError(422, f"the body is not valid JSON ({problem.get('ctx', {}).get('error', 'parse error')})", "body")
    if problem["type"] in ("model_attributes_type", "dict_type") or not where:
        return ServeError(422, "the body must be a JSON object, e.g. {\"prompt\": \"def main(\"}", "body")
    if problem["type"] == "extra_forbidden":
        known = ", ".join(REQUESTS[route].model_fields) if route in REQUESTS else ""
        return ServeError(422, f"{where[0]}: unknown field; the fields are: {known}", where[0])
    return ServeError(422, f"{'.'.join(where)}: {problem['msg'].lower()}", where[0])


def answer_json(answer: ServeError) -> JSONResponse:
    """A refusal as the server sends it: {"error", "field"} with its status."""
    headers = {"Retry-After": "1"} if answer.status == 503 else None
    return JSONResponse({"error": answer.message, "field": answer.field}, status_code=answer.status, headers=headers)


async def refused(request: Request, error: Exception) -> JSONResponse:
    return answer_json(refusal(error, request.url.path))


class BodyLimit:
    """ASGI middleware: a body over limits.max_body_bytes gets 413, by its Content-Length before it is
    read, and by the bytes actually received (a chunked body has no Content-Length), which stop being
    read at the limit."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        size = dict(scope["headers"]).get(b"content-length", b"")
        if size.isdigit() and int(size) > self.limit:
            return await answer_json(self.too_large(f"the body is {int(size)} bytes"))(scope, receive, send)
        received = 0

        async def bounded_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise self.too_large(f"the body is over {received} bytes")
            return message

        await self.app(scope, bounded_receive, send)

    def too_large(self, size: str) -> ServeError:
        return ServeError(413, f"{size}; this server takes at most {self.limit}", "body")


def create_app(models: dict[str, Served], limits: Limits = Limits(), engine: str = "thread",
               ready_message: str | None = None) -> FastAPI:
    """The app. engine: where each GPT generates (infer/engine.py): "thread" (in this process, on the
    models given) or "process" (each loads its checkpoint again: what `ssl-zoo serve` runs; a script
    that asks for it needs the `if __name__ == "__main__":` guard of multiprocessing's spawn).
    ready_message: printed once the engines are loaded and the server takes requests."""
    server = Server(models, limits, engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await server.start_engines()
        if ready_message:
            print(ready_message, flush=True)
        yield
        server.close()

    # no /docs: FastAPI's docs page loads its scripts from a CDN; the schema is at /openapi.json
    app = FastAPI(title="ssl-zoo serve", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.server = server
    app.include_router(router)
    for error in (ServeError, UserError, RequestValidationError, StarletteHTTPException):
        app.add_exception_handler(error, refused)  # every refusal in one shape: {"error", "field"}
    app.add_middleware(BodyLimit, limit=limits.max_body_bytes)
    return app


def check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as e:
            fix = (f"pass another port, e.g. port={port + 1}" if e.errno in (errno.EADDRINUSE, errno.EACCES) else
                   "pass host=127.0.0.1 (this machine only) or one of this machine's addresses")
            raise UserError(f"cannot listen on {host}:{port} ({e.strerror}); {fix}") from None


def serve(checkpoints: list[str], host: str = "127.0.0.1", port: int = 8000, device: str = "auto",
          limits: Limits = Limits(), precision: str = "32", engine: str = "process") -> None:
    import uvicorn

    if not checkpoints:
        raise UserError("no checkpoint to serve; pass checkpoint=<run dir>/checkpoints/last.ckpt of a GPT or BERT run")
    if engine not in ENGINES:
        raise BadValue("engine", f"engine={engine} is not one of {', '.join(ENGINES)}: pass engine=process (the default) or engine=thread")
    models = load_models(checkpoints, device, precision)
    check_port_free(host, port)
    for served in models.values():
        info = served.info
        print(f"  {info['name']}: {info['method']} {info['model']}, {info['params'] / 1e6:.2f}M params, "
              f"{info['steps']} steps on {info['data']}, weights in {info['precision']}  ({info['checkpoint']})")
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"ssl-zoo serve: listening on {host}: anyone who can reach this machine can use these models")
    if engine == "process":  # each GPT's engine loads its own copy: this one is only read for its tokenizer
        for served in models.values():
            if served.info["task"] == "generate":
                served.method.to("meta")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # (the freed weights back to the device, for the engines)
    app = create_app(models, limits, engine, ready_message=f"ssl-zoo serve: http://{host}:{port}/  (Ctrl+C stops)")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def run(cfg: DictConfig) -> None:
    """The command: checkpoint, checkpoint2, ... (each a path or a list of them), in order."""
    require_values(cfg, limits=Limits, **{"": {"port": Range(1, 65535, whole=True),
                                               "host": Matches(r"\S+", "a host name or address, e.g. 127.0.0.1 or 0.0.0.0")}})
    checkpoints = []
    for key in sorted((k for k in cfg if re.fullmatch(r"checkpoint\d*", str(k))), key=lambda k: int(k[10:] or 1)):
        value = OmegaConf.to_object(cfg[key]) if OmegaConf.is_config(cfg[key]) else cfg[key]
        checkpoints += [str(v) for v in (value if isinstance(value, list) else [value]) if v is not None]
    resolved = [Path(c).resolve() for c in checkpoints]
    if twice := next((c for c, r in zip(checkpoints, resolved) if resolved.count(r) > 1), None):
        raise UserError(f"checkpoint {twice} is given more than once; give each checkpoint once (each is served as one model)")
    serve(checkpoints, cfg.host, cfg.port, cfg.device, Limits(**cfg.limits), cfg.precision, cfg.engine)
