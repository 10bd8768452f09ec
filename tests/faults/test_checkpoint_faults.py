"""Faults around checkpoints: the disk fills up while one is written (clear error, the previous checkpoint intact and
resumable), and a checkpoint's corpus index is corrupt or deleted at resume (clear error, or a rebuild with
``rebuild_index_on_resume``)."""

from __future__ import annotations

import errno
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from grace_rl.inspection.log import read_rationales
from grace_rl.resume import CHECKPOINT_MARKER, CheckpointSaveError, CorpusIndexResumeError, latest_checkpoint
from grace_rl.train import main, parse_args
from grace_rl.trainer import GraceTrainer

pytestmark = [pytest.mark.faults, pytest.mark.slow]
FULL_AT = 2  # the step whose checkpoint hits a full disk


@pytest.fixture(scope="module")
def disk_full_run(tmp_path_factory, tiny_model_dir, dcg_data, recipe, dcg_args):
    """A dcg run (save_steps=1, max_steps=3) whose checkpoint-2 hits ENOSPC half-way through the optimizer state.
    Returns ``(root, settings, error)``; the run directory is ``root / "run"``."""
    rows, corpus = dcg_data
    root = tmp_path_factory.mktemp("disk-full")
    settings = dict(max_steps=3, save_strategy="steps", save_steps=1, **dcg_args(corpus))
    real = GraceTrainer._save_optimizer_and_scheduler

    def save(self, output_dir):
        if self.state.global_step == FULL_AT:
            Path(output_dir, "optimizer.pt").write_bytes(b"\x80\x02half a pickle")  # what fit on the disk
            raise OSError(errno.ENOSPC, "No space left on device", str(Path(output_dir, "optimizer.pt")))
        return real(self, output_dir)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(GraceTrainer, "_save_optimizer_and_scheduler", save)
        with pytest.raises(CheckpointSaveError) as info:
            main(*parse_args(recipe(root, tiny_model_dir, rows, **settings)))
    return root, settings, info.value


def _copy_run(disk_full_run, tmp_path: Path) -> Path:
    root, _, _ = disk_full_run
    shutil.copytree(root / "run", tmp_path / "run")
    return tmp_path / "run"


def test_disk_full_on_checkpoint_fails_clearly_and_keeps_the_previous_one(disk_full_run, tally):
    root, _, error = disk_full_run
    out = root / "run"
    message = str(error)
    assert error.errno == errno.ENOSPC
    assert "disk is full" in message and f"checkpoint-{FULL_AT}" in message
    assert "the last complete checkpoint is" in message and "checkpoint-1" in message and "Free disk space" in message
    assert not (out / f"checkpoint-{FULL_AT}").exists()  # the partial checkpoint is gone ...
    assert latest_checkpoint(out) == (out / "checkpoint-1").resolve()  # ... so `true` resumes from the intact one
    marker = json.loads((out / "checkpoint-1" / CHECKPOINT_MARKER).read_text())
    assert marker["global_step"] == 1 and (out / "checkpoint-1" / "corpus_index" / "corpus_index.json").is_file()
    tally.fault_survived()


def test_resume_after_disk_full_continues_from_the_intact_checkpoint(
    disk_full_run, tmp_path, tiny_model_dir, dcg_data, recipe, tally
):
    _, settings, _ = disk_full_run
    out = _copy_run(disk_full_run, tmp_path)
    assert {r["step"] for r in read_rationales(out)} == {1, 2}  # step 2 ran before its checkpoint failed
    summary = main(
        *parse_args(recipe(tmp_path, tiny_model_dir, dcg_data[0], **settings, resume_from_checkpoint="true"))
    )
    assert summary["steps"] == 3
    steps, expected = [r["step"] for r in read_rationales(out)], [1] * 6 + [2] * 6 + [3] * 6
    tally.lines_lost(sum((Counter(expected) - Counter(steps)).values()))
    assert steps == expected  # step 2's first records were cut, not duplicated


def test_corrupt_index_at_resume_is_a_clear_error(disk_full_run, tmp_path, tiny_model_dir, dcg_data, recipe, tally):
    _, settings, _ = disk_full_run
    out = _copy_run(disk_full_run, tmp_path)
    (faiss_file,) = (out / "checkpoint-1" / "corpus_index").glob("index-*.faiss")
    faiss_file.write_bytes(b"garbage" * 10)
    log_before = (out / "rationales.jsonl").read_bytes()
    with pytest.raises(CorpusIndexResumeError) as info:
        main(*parse_args(recipe(tmp_path, tiny_model_dir, dcg_data[0], **settings, resume_from_checkpoint="true")))
    message = str(info.value)
    assert "checkpoint-1" in message and "corpus_index" in message and "rebuild_index_on_resume: true" in message
    assert (out / "rationales.jsonl").read_bytes() == log_before  # a refused resume touches no log
    tally.fault_survived()


def test_deleted_index_at_resume_is_rebuilt_when_configured(
    disk_full_run, tmp_path, tiny_model_dir, dcg_data, recipe, tally
):
    _, settings, _ = disk_full_run
    out = _copy_run(disk_full_run, tmp_path)
    (faiss_file,) = (out / "checkpoint-1" / "corpus_index").glob("index-*.faiss")
    faiss_file.unlink()
    argv = recipe(tmp_path, tiny_model_dir, dcg_data[0], **settings, resume_from_checkpoint="true")
    with pytest.raises(CorpusIndexResumeError, match="rebuild_index_on_resume"):
        main(*parse_args(argv))
    argv = recipe(
        tmp_path, tiny_model_dir, dcg_data[0], **settings, resume_from_checkpoint="true", rebuild_index_on_resume=True
    )
    assert main(*parse_args(argv))["steps"] == 3
    meta = json.loads((out / "corpus_index" / "corpus_index.json").read_text())
    assert min(meta["versions"]) >= 1  # re-embedded at the checkpoint's step 1, then refreshed; nothing from step 0
    assert [r["step"] for r in read_rationales(out)] == [1] * 6 + [2] * 6 + [3] * 6
    tally.fault_survived()
