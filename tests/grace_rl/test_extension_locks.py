"""Stale torch extension build locks (a deepspeed op compile killed half-way) are found, named and warned about."""

from __future__ import annotations

import logging
import os

import pytest

from grace_rl.extension_locks import (
    LOCK_NAME,
    extensions_root,
    stale_extension_locks,
    stale_lock_message,
    warn_stale_extension_locks,
)


def make_lock(root, name: str, age_s: float, now: float):
    lock = root / name / LOCK_NAME
    lock.parent.mkdir(parents=True)
    lock.write_text("")
    os.utime(lock, (now - age_s, now - age_s))
    return lock


def test_only_locks_older_than_the_threshold_are_stale(tmp_path):
    now = 1_000_000.0
    old = make_lock(tmp_path, "deepspeed_shm_comm", 3 * 3600, now)
    young = make_lock(tmp_path, "cpu_adam", 60, now)  # a compile may be running: not reported
    (tmp_path / "built_op").mkdir()  # a finished build has no lock
    (tmp_path / "built_op" / "built_op.so").write_text("")
    assert stale_extension_locks(tmp_path, older_than_s=1800, now=now) == [old]
    assert stale_extension_locks(tmp_path, older_than_s=30, now=now) == sorted([old, young])
    assert stale_extension_locks(tmp_path / "missing", now=now) == []
    with pytest.raises(ValueError, match="older_than_s"):
        stale_extension_locks(tmp_path, older_than_s=0)


def test_the_warning_names_each_lock_and_the_fix(tmp_path, caplog):
    now = 1_000_000.0
    lock = make_lock(tmp_path, "deepspeed_shm_comm", 3600, now)
    os.utime(lock, (0, 0))  # older than any threshold, whatever the real clock says
    with caplog.at_level(logging.WARNING, logger="grace_rl.extension_locks"):
        assert warn_stale_extension_locks(tmp_path) == [lock]
    assert str(lock) in caplog.text and "delete the directory" in caplog.text
    assert stale_lock_message([lock]) in caplog.text
    caplog.clear()
    lock.unlink()
    with caplog.at_level(logging.WARNING, logger="grace_rl.extension_locks"):
        assert warn_stale_extension_locks(tmp_path) == []
    assert caplog.text == ""


def test_the_root_follows_torch(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    assert extensions_root() == tmp_path
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # torch creates the build directory it names
    from torch.utils.cpp_extension import _get_build_directory

    # torch's own build directory for an extension is <root>/<name>
    assert extensions_root() == tmp_path.resolve() / "cache" / "torch_extensions" / extensions_root().name
    assert extensions_root() / "grace_probe" == type(extensions_root())(_get_build_directory("grace_probe", False))
