import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from ssl_zoo import config_dir

ROOT = Path(__file__).resolve().parents[1]
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):  # workers share the cores (make test: two), not each all of them;
    # set before torch is imported, and inherited by the commands a test runs (tests/conftest.run_cli)
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
# Tokenizers and token ids are cached here, not in the user's ~/.cache (the CLI subprocesses inherit it).
os.environ["SSL_ZOO_CACHE"] = tempfile.mkdtemp(prefix="ssl_zoo_test_cache_")
atexit.register(shutil.rmtree, os.environ["SSL_ZOO_CACHE"], ignore_errors=True)

# A run small enough for a test: a few steps on a few hundred tiny images, a quick probe.
TINY = [
    "trainer=debug",
    "data.num_train=256",
    "data.num_test=100",
    "data.batch_size=32",
    "probe.max_train=200",
    "probe.steps=50",
    "probe.weight_decays=[0.0]",
]


def compose_train(*overrides: str):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def run_cli(*args: str, cwd=None, timeout=600, fresh_process: bool = False) -> subprocess.CompletedProcess:
    """`ssl-zoo args...` as a user runs it: its exit code, stdout and stderr. In this process (through cli.main, as
    the console script calls it; a new Python would spend seconds importing Lightning each time), or in a fresh
    one (fresh_process: what needs its own process, such as DDP's launcher re-running the command line)."""
    if fresh_process or os.environ.get("SSL_ZOO_TEST_SUBPROCESS") == "1":
        env = {**os.environ, "PYTHONWARNINGS": "ignore"}
        return subprocess.run([sys.executable, "-m", "ssl_zoo", *args], cwd=cwd or ROOT, capture_output=True, text=True,
                              timeout=timeout, env=env)
    return _in_process(list(args), cwd or ROOT)


def _in_process(args: list[str], cwd) -> subprocess.CompletedProcess:
    """cli.main(args) with its stdout and stderr caught at the file descriptors (what C code and Python write)."""
    import io
    import traceback
    import warnings

    from ssl_zoo import cli

    files = [tempfile.TemporaryFile(), tempfile.TemporaryFile()]
    streams, argv, here = (sys.stdout, sys.stderr), sys.argv[:], os.getcwd()
    for stream in streams:
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    os.dup2(files[0].fileno(), 1)
    os.dup2(files[1].fileno(), 2)
    # on the descriptors themselves: a logging handler made during the run that writes after it writes to what fd 1
    # and 2 are then (pytest's capture), not to a closed file
    sys.stdout, sys.stderr = (io.TextIOWrapper(open(fd, "wb", closefd=False), write_through=True) for fd in (1, 2))
    code = 0
    try:
        os.chdir(cwd)
        sys.argv = ["ssl-zoo", *args]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # as PYTHONWARNINGS=ignore for a fresh process
            try:
                cli.main(args)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:
                traceback.print_exc()  # as Python prints what nothing caught, and exits 1
                code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        sys.stdout, sys.stderr = streams
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
        os.chdir(here)
        sys.argv = argv
    texts = []
    for f in files:
        f.seek(0)
        texts.append(f.read().decode(errors="replace"))
        f.close()
    return subprocess.CompletedProcess(["ssl-zoo", *args], code, *texts)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The last line of a command that was refused: exit code 2, no traceback."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    return [line for line in result.stderr.strip().splitlines() if line.strip()][-1]


def own_copy(run_dir: Path, tmp: Path) -> Path:
    """A copy of a shared run's last.ckpt in a run folder of its own, for commands that write the run's
    results.json (icl), so that tests sharing the session's run never see each other's results."""
    ckpt = tmp / "run" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    shutil.copy(run_dir / "checkpoints" / "last.ckpt", ckpt)
    return ckpt


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now (for a test server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A speech run small enough for a test: a few voices saying two words, a nano transformer, a few steps.
TINY_SPEECH_RUN = ["data=spoken_words", "data.words=[yes,no]", "data.num_voices=3", "data.takes=4", "data.test_takes=1",
                   "data.batch_size=8", "model=transformer_nano", "trainer=debug"]


@pytest.fixture
def tiny_overrides():
    return list(TINY)


# Tiny text runs on a toy corpus, trained once per test session.
WORDS = "the cat sat on the mat and the dog ate the bone while a bird sang in the tree by the river".split()


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    import random

    rng = random.Random(0)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) + "." for _ in range(1500)]
    lines += [f"{a} + {b} => {a + b}" for a, b in ((rng.randint(10, 99), rng.randint(10, 99)) for _ in range(300))]
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def tiny_text(method, corpus, run_dir, *extra):
    return ["train", f"method={method}", "data=text_file", f"data.path={corpus}", "data.block_size=48",
            "data.batch_size=8", "data.val_windows=16", "model=transformer_nano", "trainer=debug",
            f"hydra.run.dir={run_dir}", *extra]


def trained(method, corpus, tmp_path_factory):
    """A tiny GPT or BERT run through the CLI (run dir, CompletedProcess); shared by the text and serve tests."""
    run_dir = tmp_path_factory.mktemp(method)
    result = run_cli(*tiny_text(method, corpus, run_dir))
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir, result


@pytest.fixture(scope="session")
def gpt_run(corpus, tmp_path_factory):
    return trained("gpt", corpus, tmp_path_factory)


@pytest.fixture(scope="session")
def bert_run(corpus, tmp_path_factory):
    return trained("bert", corpus, tmp_path_factory)
