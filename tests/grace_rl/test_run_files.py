"""grace_rl.run_files: the JSONL reader splits on "\\n" only and names file:line; the atomic write never leaves a
partial file."""

from __future__ import annotations

import json
import os

import pytest

from grace_rl import run_files
from grace_rl.run_files import JsonlError, atomic_write, iter_jsonl, read_jsonl


def test_jsonl_reader_splits_on_newline_only(tmp_path):
    rows = [{"text": "line\u2028separator"}, {"text": "form\x0cfeed \x85 next-line"}, {"n": 3}]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows) + "\n", encoding="utf-8")
    assert read_jsonl(path) == rows  # str.splitlines() would cut rows 1 and 2 in two
    assert [n for n, _ in iter_jsonl(path)] == [1, 2, 3]


def test_jsonl_errors_name_file_and_line_and_torn_tail_is_optional(tmp_path, caplog):
    path = tmp_path / "log.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n{"a": ')
    with pytest.raises(JsonlError, match=rf"{path.name}:4: line 4 is not valid JSON"):
        read_jsonl(path)
    assert read_jsonl(path, skip_torn_tail=True) == [{"a": 1}, {"a": 2}]
    assert "torn last line" in caplog.text
    path.write_text('{"a": 1}\n{"a": \n{"a": 2}\n')
    with pytest.raises(JsonlError, match=":2: "):  # a torn middle line is an error either way
        read_jsonl(path, skip_torn_tail=True)


def test_atomic_write_replaces_whole_file_and_cleans_up(tmp_path, monkeypatch):
    target = tmp_path / "grace_run.json"
    atomic_write(target, "old")
    atomic_write(target, b"new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == [target.name]

    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        atomic_write(target, "partial")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == [target.name]


def test_file_names_are_defined_once():
    assert run_files.RATIONALE_LOG == "rationales.jsonl" and run_files.SUMMARY_FILE in run_files.RUN_FILES
