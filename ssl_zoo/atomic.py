"""Files written whole or not at all: every file ssl-zoo writes whole (checkpoints, the run config,
results, tables, plots, the text cache, synthesised audio) goes through `atomic_write`, so that a
reader, or a run that was killed, never finds half a file. (The run's logs grow line by line.)"""

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from ssl_zoo.errors import UserError

_UMASK = os.umask(0)  # read once (setting it is the only way to read it), and put back at once
os.umask(_UMASK)


def atomic_write(path: str | Path, data: str | bytes | Callable[[BinaryIO], object]) -> Path:
    """Write `path` from text (UTF-8), bytes, or a function that writes to the open binary file
    (torch.save, savefig, a stream of ids): into a temporary file of its own in the same folder, flushed
    to disk, then renamed over `path` (a rename within a folder is atomic). On any failure the
    temporary file is removed and `path` is left as it was."""
    path, written = Path(path), 0
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # unique: ranks may race
    except OSError as e:
        raise cannot_write(path, e, 0) from None
    try:
        with os.fdopen(fd, "wb") as f:
            try:
                if callable(data):
                    data(f)
                else:
                    f.write(data.encode("utf-8") if isinstance(data, str) else data)
                f.flush()
                os.fsync(f.fileno())
            finally:
                written = f.tell()
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private: give it the mode open() would
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise cannot_write(path, e, written) from None
    except RuntimeError as e:  # torch.save's C++ writer reports a failed write (a full disk) as a RuntimeError
        Path(tmp).unlink(missing_ok=True)
        if not any(sign in str(e) for sign in ("PytorchStreamWriter failed", "unexpected pos", "file write failed")):
            raise
        raise cannot_write(path, OSError(f"the write failed ({disk_space(path.parent)})"), written) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def disk_space(folder: Path) -> str:
    """How much room is left where folder is, in words."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return "the disk's free space unknown"
    return "the disk is full" if free < 1 << 20 else f"{free / 1e9:,.1f} GB free on the disk"


def cannot_write(path: Path, error: OSError, written: int) -> UserError:
    """One line for a write that failed (a full disk, a read-only folder): the path, the reason, how
    much was written before it failed; the file at path is as it was before."""
    size = f" after {written:,} bytes" if written else ""
    return UserError(f"cannot write {path}{size}: {error.strerror or error}; {path.name} is left as it was: free space "
                     "there, or write to another folder (train: hydra.run.dir=..., compare: --out)")


def check_can_write(path: str | Path, setting: str, folder: bool = False) -> None:
    """Refuse before any work a path that cannot be written (a file where a folder must be, a read-only
    folder), in one line naming the setting that chose it; folder: path is a folder to be made."""
    path = existing = Path(path)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing == path and path.is_dir() != folder:
        problem = f"{path} is {'a file, not a folder' if folder else 'a folder'}"
    elif existing != path and not existing.is_dir():
        problem = f"{existing} is a file, not a folder"
    elif not os.access(existing if existing.is_dir() else existing.parent, os.W_OK | os.X_OK):
        problem = f"{existing} is read-only"
    else:
        try:  # what access() cannot tell (a root user in /proc, a full or read-only file system): try
            os.rmdir(tempfile.mkdtemp(dir=existing if existing.is_dir() else existing.parent, prefix=".ssl_zoo_check."))
            return
        except OSError as e:
            problem = f"{existing} takes no new files ({e.strerror})"
    raise UserError(f"cannot write {path}: {problem}; give {setting}=<a {'folder' if folder else 'path'} you can write>")

