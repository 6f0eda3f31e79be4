"""Atomic writes: the old file or the new one, never half of one, and no temporary file left."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest

from tripletlib import files


def test_text_json_and_npz_are_written_whole(tmp_path):
    assert files.write_text_atomic(tmp_path / "a.txt", "hello\n").read_text() == "hello\n"
    files.write_json_atomic(tmp_path / "b.json", {"b": 1, "a": [1, 2]})
    assert (tmp_path / "b.json").read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'
    files.save_npz_atomic(tmp_path / "c.npz", values=np.arange(3))
    with np.load(tmp_path / "c.npz") as stored:
        assert stored["values"].tolist() == [0, 1, 2]
    files.write_bytes_atomic(tmp_path / "sub" / "d.bin", b"\x00\x01")  # the folder is created
    assert (tmp_path / "sub" / "d.bin").read_bytes() == b"\x00\x01"
    assert files.leftover_temporary_files(tmp_path) == []


@pytest.mark.parametrize("durable", [True, False])
def test_durable_flushes_before_the_rename(durable, tmp_path, monkeypatch):
    """durable=False (the synthetic images) renames without the flush; both replace whole."""
    flushed = []
    monkeypatch.setattr(files, "_fsync", flushed.append)
    target = tmp_path / "image.jpg"
    target.write_bytes(b"old")
    files.write_bytes_atomic(target, b"new bytes", durable=durable)
    assert target.read_bytes() == b"new bytes" and files.leftover_temporary_files(tmp_path) == []
    assert len(flushed) == (1 if durable else 0)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text('{"old": true}\n')

    with pytest.raises(OSError, match="No space left"):
        with files.atomic_path(target) as temporary:
            temporary.write_text('{"new": tr')  # half written, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(temporary))
    assert json.loads(target.read_text()) == {"old": True}
    assert files.leftover_temporary_files(tmp_path) == []

    with pytest.raises(KeyboardInterrupt):
        with files.atomic_path(target) as temporary:
            temporary.write_text("partial")
            raise KeyboardInterrupt
    assert json.loads(target.read_text()) == {"old": True}
    assert files.leftover_temporary_files(tmp_path) == []


def test_the_temporary_name_keeps_the_extension_writers_check(tmp_path):
    with files.atomic_path(tmp_path / "embedder.weights.h5") as temporary:
        assert temporary.name.endswith("embedder.weights.h5") and temporary.parent == tmp_path
        temporary.write_bytes(b"weights")
    assert (tmp_path / "embedder.weights.h5").read_bytes() == b"weights"
    with pytest.raises(ValueError, match=r"\.npz"):
        files.save_npz_atomic(tmp_path / "c.np", values=np.zeros(1))


def test_a_writer_that_writes_nothing_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing was written"):
        with files.atomic_path(tmp_path / "x.txt"):
            pass
    assert not (tmp_path / "x.txt").exists()


def test_a_folder_is_not_replaced(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(IsADirectoryError):
        files.write_text_atomic(tmp_path / "out", "x")
    assert (tmp_path / "out").is_dir()


def test_a_device_is_written_in_place_not_replaced():
    """/dev/full: renaming over it would replace the device; writing to it is a full disk."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    with pytest.raises(OSError) as error:
        files.write_text_atomic("/dev/full", "x" * 10_000)
    assert error.value.errno == errno.ENOSPC
    assert not os.path.isfile("/dev/full")  # still the device


def test_a_folder_lock_admits_one_holder_and_names_it(tmp_path):
    from tripletlib.files import FolderBusyError, folder_lock

    with folder_lock(tmp_path / "out", "train a row") as lock:
        assert lock.read_text().startswith(f"{os.getpid()} (train a row)")
        with pytest.raises(FolderBusyError, match=rf"in use by .*process {os.getpid()} \(train"):
            with folder_lock(tmp_path / "out", "another"):
                pass
    with folder_lock(tmp_path / "out", "the next one"):  # released at the end of the block
        pass
