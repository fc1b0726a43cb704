"""`ssl-zoo serve`: the JSON API through the ASGI test client (generation in an engine thread), streaming
and cancellation through a real uvicorn server on 127.0.0.1 (in an engine process, as `ssl-zoo serve`
runs it), and every bad request answered with a 4xx that names the problem."""

import contextlib
import json
import socket
import threading
import time

import httpx
import pytest
import torch
from fastapi.testclient import TestClient

from conftest import free_port, one_error_line, run_cli
from ssl_zoo.commands.serve import Limits, create_app, load_models, serve
from ssl_zoo.errors import BadValue
from ssl_zoo.infer.batcher import ContinuousBatcher
from ssl_zoo.infer.decode import generate
from ssl_zoo.infer.text import SamplingSettings, prompt_ids


@pytest.fixture(scope="module")
def models(gpt_run, bert_run):
    return load_models([gpt_run[0] / "checkpoints" / "last.ckpt", bert_run[0] / "checkpoints" / "last.ckpt"], "cpu")


@pytest.fixture(scope="module")
def client(models):
    with TestClient(create_app(models, Limits(max_new_tokens=300, max_prompt_chars=200, max_top_k=20))) as client:
        yield client


def events(body: str) -> list[tuple[str, dict]]:
    """(event, data) of each server-sent event in a response body."""
    parsed = []
    for block in body.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        parsed.append((fields.get("event", "message"), json.loads(fields["data"])))
    return parsed


@contextlib.contextmanager
def running(app):
    """A real server of `app` on a free loopback port: its address."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def server(models):
    """At most two generations at once, long generations allowed; each GPT's engine in a process of its
    own, as `ssl-zoo serve` runs it."""
    with running(create_app(models, Limits(max_new_tokens=5000, max_concurrent=2), "process")) as address:
        yield address


def test_models_lists_the_checkpoints_with_method_size_and_data(client):
    listing = client.get("/models").json()
    by_name = {m["name"]: m for m in listing["models"]}
    assert set(by_name) == {"gpt-text_file", "bert-text_file"}
    gpt = by_name["gpt-text_file"]
    assert (gpt["task"], gpt["method"], gpt["model"], gpt["data"]) == ("generate", "gpt", "transformer_nano", "text_file")
    assert gpt["params"] > 10_000 and gpt["steps"] > 0 and gpt["block_size"] == 48
    assert by_name["bert-text_file"]["task"] == "fill"
    assert listing["limits"]["max_new_tokens"] == 300
    assert "<title>ssl-zoo" in client.get("/").text  # the page, shipped inside the package


def test_models_in_bf16_say_so_and_generate(gpt_run):
    served = load_models([gpt_run[0] / "checkpoints" / "last.ckpt"], "cpu", "bf16")
    (model,) = served.values()
    assert model.info["precision"] == "bfloat16" and next(model.method.parameters()).dtype == torch.bfloat16
    with TestClient(create_app(served, Limits())) as client:
        assert client.get("/models").json()["models"][0]["precision"] == "bfloat16"
        answer = client.post("/generate", json={"prompt": "the", "max_new_tokens": 12, "seed": 3})
    assert answer.status_code == 200 and events(answer.text)[-1][0] == "done"


def test_an_app_started_again_generates_again(models):
    app = create_app(models, Limits())  # engine="thread": create_app's default
    body = {"prompt": "the", "max_new_tokens": 5, "seed": 1}
    texts = []
    for _ in range(2):  # the first start's engines are closed at its end; the second gets its own
        with TestClient(app) as client:
            answer = client.post("/generate", json=body)
            assert answer.status_code == 200 and events(answer.text)[-1][0] == "done", answer.text
            texts.append(answer.text.split("event: done")[0])
    assert texts[0] == texts[1]


def test_generate_streams_events_and_ends_with_done(client):
    body = {"prompt": "the cat", "max_new_tokens": 40, "temperature": 1.0, "top_k": 10, "seed": 3}
    with client.stream("POST", "/generate", json=body) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    stream = events(text)
    pieces = [data["text"] for event, data in stream if event == "message"]
    assert len(pieces) >= 10 and all(pieces)
    assert stream[-1][0] == "done" and stream[-1][1]["tokens"] == 40
    assert [event for event, _ in stream].count("done") == 1


def test_the_same_seed_writes_what_ssl_zoo_generate_writes(client, gpt_run):
    settings = {"max_new_tokens": 30, "temperature": 1.0, "top_k": 10, "top_p": 0.9, "seed": 7}
    served = events(client.post("/generate", json={"prompt": "the dog", **settings}).text)
    text = "".join(data["text"] for event, data in served if event == "message")
    cli = run_cli("generate", f"checkpoint={gpt_run[0] / 'checkpoints' / 'last.ckpt'}", "prompt=the dog",
                  *(f"{k}={v}" for k, v in settings.items()))
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert cli.stdout == "the dog" + text + "\n"
    other = events(client.post("/generate", json={"prompt": "the dog", **settings, "seed": 8}).text)
    assert "".join(d["text"] for e, d in other if e == "message") != text


def test_streams_that_join_and_leave_a_batch_get_the_tokens_each_gets_alone(models):
    import torch

    method = models["gpt-text_file"].method
    batcher = ContinuousBatcher(method, slots=3)
    asks = [("the cat", SamplingSettings(12, 1.0, 10, None, 1)), ("a", SamplingSettings(30, 0.0, None, None, 2)),
            ("the dog sat on the mat and the cat sat on the dog " * 2, SamplingSettings(25, 0.9, 20, 0.9, 3)),  # passes block_size
            ("on the", SamplingSettings(6, 0.8, None, 0.8, 4)), ("the", SamplingSettings(40, 1.0, 5, None, 5))]
    got = {i: [] for i in range(len(asks))}
    streams = {}

    def submit(i):
        prompt, settings = asks[i]
        streams[i] = batcher.submit(prompt_ids(method, prompt), settings, got[i].append)

    submit(0), submit(1)
    for _ in range(3):
        batcher.step()
    submit(2), submit(3), submit(4)  # three slots: the last waits until the first stream leaves
    calls = []
    hook = method.backbone.register_forward_hook(lambda *_: calls.append(1))
    while batcher.live or batcher.waiting:
        past_context = sum(len(s.ids) > method.backbone.cfg.block_size for s in batcher.live)  # each re-reads its window
        joining, before = len(batcher.waiting), len(calls)
        batcher.step()
        if not joining and len(batcher.live) > past_context:  # the others: one forward pass for all of them
            assert len(calls) - before == 1 + past_context
    hook.remove()
    assert len(streams[4].ids) > 0 and streams[4].slot == streams[0].slot  # it took the row the first one left
    for i, (prompt, s) in enumerate(asks):
        assert got[i][-1] is None and len(got[i]) == s.max_new_tokens + 1
        alone = generate(method.backbone, [prompt_ids(method, prompt)], s.max_new_tokens, s.temperature, s.top_k, s.top_p,
                         torch.Generator().manual_seed(s.seed))
        assert got[i][:-1] == [t.item() for t in alone], i


def test_eight_clients_at_once_each_get_their_seeds_text(models):
    from concurrent.futures import ThreadPoolExecutor

    with running(create_app(models, Limits(max_concurrent=8), "process")) as address:
        def text(seed: int) -> str:
            body = {"prompt": "the" + " cat" * seed, "max_new_tokens": 20, "temperature": 1.0, "top_k": 10, "seed": seed}
            with httpx.Client(base_url=address, timeout=60) as http:  # a connection of its own
                answer = http.post("/generate", json=body)
            assert answer.status_code == 200, answer.text
            return "".join(d["text"] for e, d in events(answer.text) if e == "message")

        with ThreadPoolExecutor(8) as pool:
            together = list(pool.map(text, range(8)))
        assert together == [text(seed) for seed in range(8)]  # each one alone
        assert httpx.get(f"{address}/health").json() | {"pieces_sent": 0} == {
            "ok": True, "generating": 0, "finished": 16, "stopped": 0, "pieces_sent": 0}


def test_fill_returns_candidates_sorted_by_probability(client):
    answer = client.post("/fill", json={"text": "the cat [MASK] on the [MASK].", "top_k": 4})
    assert answer.status_code == 200, answer.text
    reply = answer.json()
    assert reply["model"] == "bert-text_file" and len(reply["masks"]) == 2
    for candidates in reply["masks"]:
        probs = [c["prob"] for c in candidates]
        assert len(candidates) == 4 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
    top = [candidates[0]["token"] for candidates in reply["masks"]]
    assert reply["filled"] == f"the cat {top[0]} on the {top[1]}."


@pytest.mark.parametrize("path, body, status, field, message", [
    ("/generate", {"max_new_tokens": 5}, 422, "prompt", "prompt: field required"),
    ("/generate", {"prompt": 12}, 422, "prompt", "prompt: input should be a valid string"),
    ("/generate", {"prompt": "a", "max_new_tokens": "ten"}, 422, "max_new_tokens", "max_new_tokens: input should be a valid integer"),
    ("/generate", {"prompt": "a", "max_new_tokens": 301}, 422, "max_new_tokens", "max_new_tokens=301 is out of range; it must be a whole number between 1 and 300"),
    ("/generate", {"prompt": "a", "temperature": -1}, 422, "temperature", "temperature=-1.0 is out of range"),
    ("/generate", {"prompt": "a", "top_p": 1.5}, 422, "top_p", "top_p=1.5 is out of range"),
    ("/generate", {"prompt": "a", "seed": 2**64}, 422, "seed", f"seed={2**64} is out of range; it must be a whole number between 0 and {2**64 - 1}"),
    ("/generate", {"prompt": "a" * 201}, 422, "prompt", "prompt is 201 characters long; this server takes at most 200"),
    ("/generate", {"prompt": "a", "temprature": 1}, 422, "temprature", "temprature: unknown field; the fields are: model, prompt, max_new_tokens"),
    ("/generate", {"prompt": "a", "model": "gpt-2"}, 404, "model", "unknown model 'gpt-2'; loaded: gpt-text_file (gpt), bert-text_file (bert)"),
    ("/generate", {"prompt": "a", "model": "bert-text_file"}, 400, "model", "model 'bert-text_file' is a BERT: it does not generate; use /fill"),
    ("/fill", {"text": "the [MASK]", "model": "gpt-text_file"}, 400, "model", "model 'gpt-text_file' is a GPT: it does not fill; use /generate"),
    ("/fill", {"text": "the cat sat"}, 422, "text", "the text has no [MASK]"),
    ("/fill", {"text": "the [MASK]", "top_k": 0}, 422, "top_k", "top_k=0 is out of range; it must be a number between 1 and 20"),
    ("/fill", {"text": "the [MASK]", "top_k": 21}, 422, "top_k", "top_k=21 is out of range"),
    ("/fill", [1, 2], 422, "body", "the body must be a JSON object"),
])
def test_bad_requests_get_a_4xx_naming_the_problem_and_the_server_goes_on(client, path, body, status, field, message):
    answer = client.post(path, json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["field"] == field and answer.json()["error"].startswith(message), answer.json()
    assert "\n" not in answer.json()["error"]
    assert client.get("/models").status_code == 200
    assert client.post("/fill", json={"text": "the [MASK]", "top_k": 2}).status_code == 200


def test_broken_json_and_oversized_bodies_are_refused(client):
    broken = client.post("/generate", content=b'{"prompt": "a",', headers={"content-type": "application/json"})
    assert broken.status_code == 422 and broken.json()["field"] == "body"
    assert broken.json()["error"].startswith("the body is not valid JSON")
    huge = client.post("/generate", content=b"x" * 70000, headers={"content-type": "application/json"})
    assert huge.status_code == 413 and "at most 65536" in huge.json()["error"]


def test_a_chunked_body_stops_being_read_at_the_limit(models):
    import anyio

    app, pulled, sent = create_app(models, Limits()), [], []

    async def receive():  # a chunked upload of 60 MB, 10 kB at a time, with no Content-Length
        pulled.append(1)
        return {"type": "http.request", "body": b"x" * 10_000, "more_body": len(pulled) < 6000}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/generate", "raw_path": b"/generate", "query_string": b"",
             "headers": [(b"content-type", b"application/json")], "http_version": "1.1", "scheme": "http",
             "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 5000), "root_path": ""}
    anyio.run(app, scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = json.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))
    assert start["status"] == 413 and body["field"] == "body" and "at most 65536" in body["error"]
    assert len(pulled) <= 7  # 70 kB read of the 60 MB: reading stopped at the limit


def test_invalid_unicode_and_unknown_routes_get_the_one_error_shape(client):
    surrogate = client.post("/generate", content=b'{"prompt": "ab\\ud800"}', headers={"content-type": "application/json"})
    assert surrogate.status_code == 400 and surrogate.json()["field"] == "prompt"
    assert "lone surrogate" in surrogate.json()["error"] and "U+D800" in surrogate.json()["error"]
    filled = client.post("/fill", content=b'{"text": "the [MASK] \\udfff"}', headers={"content-type": "application/json"})
    assert filled.status_code == 400 and filled.json()["field"] == "text"
    for answer, status in ((client.get("/nope"), 404), (client.get("/generate"), 405), (client.delete("/models"), 405)):
        assert answer.status_code == status and set(answer.json()) == {"error", "field"}, answer.json()
    assert "GET /models" in client.get("/nope").json()["error"]


def test_tokens_arrive_while_the_server_is_still_generating(server):
    with httpx.Client(base_url=server, timeout=30) as http:
        body = {"prompt": "the", "max_new_tokens": 3000, "temperature": 1.0, "seed": 0}
        with http.stream("POST", "/generate", json=body) as response:
            lines = response.iter_lines()
            first = next(line for line in lines if line.startswith("data: "))
            assert json.loads(first[6:])["text"]
            assert http.get("/health").json()["generating"] == 1  # the first token came before the last
            rest = list(lines)
        assert "event: done" in rest
        assert http.get("/health").json()["generating"] == 0


def test_a_client_that_goes_away_stops_its_generation(server):
    with httpx.Client(base_url=server, timeout=30) as http:
        before = http.get("/health").json()
        body = {"prompt": "the", "max_new_tokens": 5000, "temperature": 1.0}
        with http.stream("POST", "/generate", json=body) as response:
            next(line for line in response.iter_lines() if line.startswith("data: "))
        # leaving the block closes the connection mid-stream
        deadline = time.time() + 10
        while (health := http.get("/health").json())["generating"] and time.time() < deadline:
            time.sleep(0.05)
        assert health["generating"] == 0 and health["stopped"] == before["stopped"] + 1
        # (that the engine itself stops computing it: the next test)


def test_the_engine_drops_cancelled_streams_ends_failed_ones_and_goes_on(models):
    from multiprocessing import Pipe

    from ssl_zoo.infer.engine import run_engine

    method = models["gpt-text_file"].method
    ours, theirs = Pipe()
    engine = threading.Thread(target=run_engine, args=(theirs, method, 4), daemon=True)
    engine.start()
    assert ours.recv() == "ready"
    got: dict[int, list] = {}

    def until(done):  # read the engine's steps until done()
        deadline = time.time() + 60
        while not done() and time.time() < deadline:
            if ours.poll(0.1):
                for key, token in ours.recv():
                    got.setdefault(key, []).append(token)
        assert done(), got

    ids, long = prompt_ids(method, "the"), SamplingSettings(5000, 1.0, 10, None, 1)
    ours.send(("submit", 0, ids, long))
    until(lambda: len(got.get(0, [])) >= 3)
    ours.send(("cancel", 0))
    until(lambda: None in got[0])
    assert got[0][-1] is None and len(got[0]) - 1 < 5000  # it left the batch: uncancelled, 5,000 tokens
    ours.send(("submit", 1, ids, SamplingSettings(5, 1.0, 10, None, 2**64)))  # a seed torch refuses
    until(lambda: 1 in got)
    assert got[1] == [None]  # that stream alone ends
    ours.send(("submit", 2, ids, long))
    until(lambda: len(got.get(2, [])) >= 2)
    failing = method.backbone.register_forward_hook(lambda *_: 1 / 0)
    ours.send(("submit", 3, ids, long))  # it joins in the step that fails
    until(lambda: None in got[2] and None in got.get(3, []))
    failing.remove()
    ours.send(("submit", 4, ids, SamplingSettings(5, 1.0, 10, None, 4)))  # and the engine goes on
    until(lambda: None in got.get(4, []))
    assert len(got[4]) == 6
    ours.send(None)
    engine.join(10)
    assert not engine.is_alive()


def test_too_many_generations_at_once_are_told_to_retry(server):
    body = {"prompt": "the", "max_new_tokens": 5000}
    with httpx.Client(base_url=server, timeout=30) as one, httpx.Client(base_url=server, timeout=30) as two, \
            httpx.Client(base_url=server, timeout=30) as three:
        with one.stream("POST", "/generate", json=body) as a, two.stream("POST", "/generate", json=body) as b:
            streams = [response.iter_lines() for response in (a, b)]  # held: a dropped iterator closes its stream
            for lines in streams:
                next(line for line in lines if line.startswith("data: "))
            busy = three.post("/generate", json=body)
            assert busy.status_code == 503, (busy.text[-300:], three.get("/health").json())
            assert busy.headers["retry-after"] == "1"
            assert "busy (2 generations running)" in busy.json()["error"]
        deadline = time.time() + 10
        while three.get("/health").json()["generating"] and time.time() < deadline:
            time.sleep(0.05)
        small = three.post("/generate", json={"prompt": "the", "max_new_tokens": 3})
        assert small.status_code == 200 and "event: done" in small.text


def test_serve_refuses_bad_checkpoints_and_a_busy_port_in_one_line(tmp_path, gpt_run):

    not_text = tmp_path / "nope.ckpt"
    not_text.write_bytes(b"not a checkpoint")
    result = run_cli("serve", f"checkpoint={not_text}")
    assert result.returncode == 2 and "nope.ckpt" in one_error_line(result)
    with pytest.raises(BadValue, match="engine=fork is not one of process, thread: pass engine=process"):
        serve([str(not_text)], engine="fork")  # (refused before any checkpoint is read)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", f"checkpoint={gpt_run[0] / 'checkpoints' / 'last.ckpt'}", f"port={port}")
    assert result.returncode == 2
    assert one_error_line(result).startswith(f"ssl-zoo: error: cannot listen on 127.0.0.1:{port}")
    assert f"port={port + 1}" in one_error_line(result)


def test_an_engine_that_dies_ends_its_streams_and_generation_is_refused_with_a_reason(models):
    app = create_app(models, Limits(max_new_tokens=5000), "process")
    with running(app) as address, httpx.Client(base_url=address, timeout=30) as http:
        (engine,) = app.state.server.engines.values()
        body = {"prompt": "the", "max_new_tokens": 5000, "temperature": 1.0}
        with http.stream("POST", "/generate", json=body) as response:
            lines = response.iter_lines()
            next(line for line in lines if line.startswith("data: "))
            engine.worker.kill()  # as the kernel's out-of-memory killer would
            last = events("\n".join(lines))[-1]
        assert last[0] == "error" and last[1]["error"].startswith("the generation engine of gpt-text_file stopped")
        refused = http.post("/generate", json={"prompt": "the", "max_new_tokens": 3})
        assert refused.status_code == 503 and refused.json()["error"].startswith(
            "the generation engine of gpt-text_file stopped: see the server's log")
        assert http.post("/fill", json={"text": "the [MASK]"}).status_code == 200  # the rest goes on
        assert http.get("/health").json()["generating"] == 0
