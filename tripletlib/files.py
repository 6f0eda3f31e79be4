"""Writing files so that an interruption leaves the old file or the new one, never half of one.

Every writer goes through `atomic_path`: the content goes to a temporary file in the same folder
(same file system), is flushed to disk, and only then renamed over the target (`os.replace`, atomic
on POSIX and Windows). A failure (a full disk, Ctrl-C, an exception in the writer) removes the
temporary file and leaves the target as it was; SIGKILL can leave a ``.tmp-*`` file behind, never a
truncated target. A target that exists and is not a regular file (``/dev/stdout``, a named pipe)
is written in place: renaming over it would replace the device.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

TEMPORARY_PREFIX = ".tmp-"


# --- hashing ------------------------------------------------------------------------------------
def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 hex digest of a file's bytes, read a megabyte at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def update_digest(digest, named_arrays) -> None:
    """Feed `(name, array)` pairs to a hashlib digest: name, dtype, shape, then the bytes."""
    for name, values in named_arrays:
        values = np.ascontiguousarray(values)
        digest.update(f"{name}:{values.dtype}:{values.shape};".encode())
        digest.update(values.tobytes())


def _is_special(path: Path) -> bool:
    return path.exists() and not path.is_file() and not path.is_dir()


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems cannot fsync; the rename still holds
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it to `path`, else delete it.

    The temporary name ends with `path`'s full name (``.tmp-<id>-embedder.weights.h5``), so
    writers that check the extension (Keras, NumPy) accept it. A folder at `path` is an error.
    `durable`: flush the file to disk before the rename (False: a killed process still leaves the
    old file or the new one, a power cut may not; for files a manifest checks, such as images).
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; expected a file name to write")
    with _naming(path):
        if _is_special(path):
            yield path
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{TEMPORARY_PREFIX}{uuid.uuid4().hex[:12]}-{path.name}")
        try:
            yield temporary
            if not temporary.exists():
                raise FileNotFoundError(f"nothing was written to {temporary} for {path}")
            if durable:
                _fsync(temporary)
            os.replace(temporary, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """An OSError without a file name (a full disk while writing) gets the target's name."""
    try:
        yield
    except OSError as error:
        if error.errno is None or error.filename is not None:
            raise
        raise type(error)(error.errno, error.strerror, str(path)) from error


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically; returns `path`."""
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
    return Path(path)


def write_bytes_atomic(path: str | os.PathLike, content: bytes, durable: bool = True) -> Path:
    """Write `content` to `path` atomically (`atomic_path`); returns `path`."""
    with atomic_path(path, durable) as temporary:
        Path(temporary).write_bytes(content)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, value: Any, **dumps_options: Any) -> Path:
    """`json.dumps(value)` (indent 2, sorted keys unless given) plus a newline, atomically."""
    options = {"indent": 2, "sort_keys": True, **dumps_options}
    return write_text_atomic(path, json.dumps(value, **options) + "\n")


def save_npz_atomic(path: str | os.PathLike, **arrays: Any) -> Path:
    """`numpy.savez(path, **arrays)` atomically; `path` must end with ``.npz``."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"{path}: expected a file name ending with .npz")
    with atomic_path(path) as temporary:
        np.savez(temporary, **arrays)
    return path


def leftover_temporary_files(folder: str | os.PathLike) -> list[Path]:
    """Temporary files that a killed writer left in `folder` (and below), sorted."""
    return sorted(Path(folder).rglob(f"{TEMPORARY_PREFIX}*"))


# --- one command at a time per output folder ----------------------------------------------------
LOCK_FILE = ".tripletlib.lock"


class FolderBusyError(ValueError):
    """Another command holds the folder's lock (`folder_lock`)."""


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, command: str) -> Iterator[Path]:
    """Hold an exclusive lock on ``folder/.tripletlib.lock`` for the block (`fcntl.flock`), so
    that two commands never write one output folder at once. The operating system releases it
    when the holder exits, crashed or killed, so no stale lock outlives a process. A second
    command gets `FolderBusyError` naming the folder and the holder's process id. The lock file
    is removed at the end of the block, also when it raised (a killed holder leaves it, unlocked
    and harmless); where `fcntl` is missing (Windows) nothing is locked.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield path
        return
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for the block
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise FolderBusyError(
                f"{folder} is in use by another tripletlib command (process {holder}); wait for "
                "it to finish or stop it, or choose another folder"
            ) from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()} ({command})\n")
            handle.flush()
            yield path
        finally:  # a failed command too leaves the folder as it found it
            with contextlib.suppress(OSError):
                path.unlink()  # released below; a folder it was the only file of stays empty
    finally:
        handle.close()  # closing the file releases the lock


# --- reading back what the package wrote --------------------------------------------------------
class DamagedFileError(ValueError):
    """A file the package wrote cannot be read back; the message names it and the way out."""


@contextlib.contextmanager
def reading(path: str | os.PathLike, way_out: str) -> Iterator[None]:
    """Turn a damaged file met in the block (truncated, garbage, wrong layout) into one
    `DamagedFileError`: "PATH is damaged (what the reader said); WAY_OUT". An OSError with an
    errno (missing file, permission denied, ...) is the file system's, not damage: it passes."""
    try:
        yield
    except DamagedFileError:
        raise
    except (
        OSError, ValueError, KeyError, TypeError, AttributeError, EOFError, zipfile.BadZipFile
    ) as error:
        if isinstance(error, OSError) and error.errno is not None:
            raise
        reason = " ".join(str(error).split()) or type(error).__name__
        if len(reason) > 120:
            reason = reason[:117] + "..."
        raise DamagedFileError(f"{path} is damaged ({reason}); {way_out}") from None


def read_json(path: str | os.PathLike, way_out: str, missing_ok: bool = False) -> Any:
    """The JSON value in `path` (None when missing and `missing_ok`); a damaged file is a
    `DamagedFileError` naming it and `way_out`."""
    path = Path(path)
    if missing_ok and not path.is_file():
        return None
    with reading(path, way_out):
        return json.loads(path.read_bytes().decode("utf-8"))


def load_npz(path: str | os.PathLike, way_out: str) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, read into memory; damage is a `DamagedFileError`."""
    with reading(path, way_out), np.load(path) as stored:
        return {name: stored[name] for name in stored.files}


def load_weights(model, path: str | os.PathLike, way_out: str) -> None:
    """`model.load_weights(path)`; a truncated, garbage or mismatched file is a `DamagedFileError`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(errno.ENOENT, f"missing weights file; {way_out}", str(path))
    with reading(path, way_out):
        model.load_weights(path)
