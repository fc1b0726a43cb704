"""The generation engine of `ssl-zoo serve`: one GPT's ContinuousBatcher (infer/batcher.py) in a process of
its own (the default) or in a thread, fed through a pipe.

Why a process: in a thread, the batcher's Python (some 60 module calls a step) and the event loop that
streams the tokens out take turns at one GIL: with 8 clients the batcher computed 72% of the time, and
the server gave 2.3x one stream's tokens/s where the batcher alone makes 3.7x. In a process of its own
it has an interpreter and a core to itself: 3.3-3.6x (docs/benchmarks.md, serving). Either way the
protocol is the same:

    server -> engine   ("submit", key, prompt ids, SamplingSettings) | ("cancel", key) | None: stop
    engine -> server   "ready" once the model is loaded; then, after each step, [(key, token), ...]:
                       the step's new tokens, a token None ending the stream `key` (it reached its
                       length, was cancelled, or a step failed: see the server's log)

On the server's side (`Engine`) the pipe is read by the event loop itself (a reader on its file
descriptor): no thread of the server's own waits for the tokens.
"""

import asyncio
import contextlib
import itertools
import multiprocessing
import signal
import threading
from multiprocessing.process import BaseProcess

import torch

from ssl_zoo.infer.batcher import ContinuousBatcher
from ssl_zoo.infer.text import SamplingSettings

ENGINES = ("process", "thread")


def run_engine(connection, method, slots: int) -> None:
    """The engine's loop: wait for work when there is none, take what came in since the last step, step."""
    # the other cores (at least one) to torch; one is left to the event loop that streams the tokens out
    # (on 2 cores a second OpenMP thread only spins against it: 8 clients 1,418 -> 2,425 tokens/s;
    # measured on 2 cores only)
    torch.set_num_threads(max(1, torch.get_num_threads() - 1))
    batcher, streams, out = ContinuousBatcher(method, slots), {}, []

    def delivery(key):
        def deliver(token: int | None) -> None:
            out.append((key, token))
            if token is None:
                streams.pop(key, None)
        return deliver

    connection.send("ready")
    while True:
        while not batcher.busy or connection.poll():
            try:
                message = connection.recv()
            except EOFError:  # the server is gone
                return
            if message is None:
                return
            kind, key, *request = message
            if kind == "submit":
                try:
                    streams[key] = batcher.submit(*request, delivery(key))
                except Exception as error:  # noqa: BLE001 - this stream ends; the others go on
                    print(f"ssl-zoo serve: a generation could not start ({type(error).__name__}: {error})", flush=True)
                    connection.send([(key, None)])  # now: no step may follow to carry it
            elif key in streams:  # cancel: it leaves at the next step
                streams[key].cancelled = True
        try:
            batcher.step()
        except Exception as error:  # noqa: BLE001 - the streams must end, not wait forever
            print(f"ssl-zoo serve: generation failed ({type(error).__name__}: {error}); its streams were ended", flush=True)
            batcher.end_all()
        if out:
            connection.send(out)
            out.clear()


def engine_process(connection, checkpoint: str, device: str, precision: str, slots: int) -> None:
    """A spawned process's entry: load the GPT as the server did, then run the engine."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C stops the server, which stops this process
    from ssl_zoo.infer.load import load_text_model

    try:
        method = load_text_model(checkpoint, "gpt", device, command="serve", precision=precision)
    except Exception as error:  # noqa: BLE001 - the server reports a stopped engine; the reason goes to its log
        print(f"ssl-zoo serve: the generation engine could not load {checkpoint} ({type(error).__name__}: {error})", flush=True)
        return
    run_engine(connection, method, slots)


@contextlib.contextmanager
def sigint_ignored():
    """SIGINT ignored while a process is spawned (in the main thread, where signals are handled): the
    child starts with it ignored, and Python then installs no KeyboardInterrupt handler of its own."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class Engine:
    """The server's side of one GPT's engine: submit() sends a request down the pipe and returns the
    asyncio queue its tokens arrive on (then None); the event loop reads the pipe when it has data."""

    def __init__(self, served, slots: int, kind: str):
        self.name = served.name
        self.connection, theirs = multiprocessing.Pipe()
        if kind == "process":
            # spawned, not forked: a fork of a process that runs torch's thread pools and an event loop is unsafe
            spawn = multiprocessing.get_context("spawn")
            self.worker = spawn.Process(target=engine_process, args=(theirs, *served.load, slots),
                                        name=f"ssl-zoo-engine-{served.name}", daemon=True)
            with sigint_ignored():  # inherited: a Ctrl+C while it starts stops the server, which stops it
                self.worker.start()
            theirs.close()  # only the engine holds its end now: when it dies, reading ours says so (EOF)
        else:
            self.worker = threading.Thread(target=run_engine, args=(theirs, served.method, slots),
                                           name=f"ssl-zoo-engine-{served.name}", daemon=True)
            self.worker.start()
        self.queues: dict[int, asyncio.Queue] = {}
        self.keys = itertools.count()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ready: asyncio.Future | None = None
        self.loaded = False  # it said "ready" (once: a later event loop's future is set at once)
        self.stopped: str | None = None  # why it no longer generates

    def attach(self) -> asyncio.Future:
        """Read the pipe on the running event loop; the future is done when the engine is ready (or gone)."""
        loop = asyncio.get_running_loop()
        if self.loop is not loop:
            self.detach()
            self.loop, self.ready = loop, loop.create_future()
            if self.loaded or self.stopped:
                self.ready.set_result(not self.stopped)
            if not self.stopped:
                loop.add_reader(self.connection.fileno(), self.received)
        return self.ready

    def detach(self) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.remove_reader(self.connection.fileno())
        self.loop = None

    def submit(self, ids: list[int], settings: SamplingSettings) -> tuple[int, asyncio.Queue]:
        self.attach()
        key, queue = next(self.keys), asyncio.Queue()
        if self.stopped:  # (the handler refuses first; this is a stream that raced the engine's end)
            queue.put_nowait(None)
            return key, queue
        self.queues[key] = queue
        self.send(("submit", key, ids, settings))  # if that finds the engine gone, its queue gets None too
        return key, queue

    def cancel(self, key: int) -> None:
        """The stream `key` leaves at the engine's next step (nothing is sent for one that ended)."""
        if self.queues.pop(key, None) is not None:
            self.send(("cancel", key))

    def send(self, message) -> None:
        if not self.stopped:
            try:
                self.connection.send(message)
            except OSError:  # it died and its end of the pipe has not been read yet
                self.gone()

    def received(self) -> None:
        """Called by the event loop when the pipe has data: every step's tokens to their streams' queues."""
        try:
            while self.connection.poll():
                message = self.connection.recv()
                if message == "ready":
                    self.loaded = True
                    self.ready.done() or self.ready.set_result(True)
                    continue
                for key, token in message:
                    if (queue := self.queues.get(key)) is not None:
                        queue.put_nowait(token)
                    if token is None:
                        self.queues.pop(key, None)
        except (EOFError, OSError):  # the engine is gone (killed, out of memory, could not load)
            self.gone()

    def gone(self) -> None:
        """The engine ended without being asked to: say so in the log, and end its streams."""
        if not self.stopped:
            if isinstance(self.worker, BaseProcess):
                self.worker.join(1)  # it is ending: its exit code says how
            code = getattr(self.worker, "exitcode", None)
            how = f" (killed by signal {-code})" if code is not None and code < 0 else f" (exit code {code})" if code else ""
            if not self.loaded:
                self.stop(f"the generation engine of {self.name} could not start: see the server's log")
            else:
                print(f"ssl-zoo serve: the generation engine of {self.name} stopped{how}; its {len(self.queues)} "
                      "streams were ended and /generate answers 503 until the server is restarted", flush=True)
                self.stop(f"the generation engine of {self.name} stopped: see the server's log; restart the server")

    def stop(self, why: str) -> None:
        """No more generation: every stream waiting gets its None (it ends early, and says so)."""
        self.detach()
        self.stopped = self.stopped or why
        if self.ready is not None and not self.ready.done():
            self.ready.set_result(False)
        for queue in self.queues.values():
            queue.put_nowait(None)
        self.queues.clear()

    def close(self) -> None:
        if not self.stopped:
            try:
                self.connection.send(None)
            except OSError:
                pass
        self.stop("the server is stopping")
        self.worker.join(10)
        if isinstance(self.worker, BaseProcess) and self.worker.is_alive():
            self.worker.terminate()
        self.connection.close()
