"""Faults around checkpoints, round two (issue 14, class 5): a REAL full disk (a small tmpfs mounted for the run,
filled just before checkpoint-2), then a tampered commit marker, truncated weights / optimizer state, and resuming
with other settings: each is refused in the preflight with one line naming the file or the differing keys, and no log
is cut.

The tmpfs needs `mount` (root, or CAP_SYS_ADMIN); without it the real-disk tests are skipped and say so (the
simulated `OSError` of `test_checkpoint_faults.py` still runs).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from grace_rl.cli import main as cli_main
from grace_rl.inspection.log import read_rationales
from grace_rl.resume import CHECKPOINT_MARKER, CheckpointSaveError, checkpoint_guard, latest_checkpoint
from grace_rl.train import main, parse_args
from grace_rl.trainer import GraceTrainer

pytestmark = [pytest.mark.faults, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
SETTINGS = {"max_steps": 3, "save_strategy": "steps", "save_steps": 1}
TMPFS_MB = 24
LEFT_FREE = 256 * 1024  # room for the adapter and configs, not for tokenizer.json (2 MB)


def _mount_tmpfs(path: Path) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_MB}m", "tmpfs", str(path)], capture_output=True)
    return proc.returncode == 0


def _fill(mount: Path, leave: int) -> Path:
    """Write zeros until only `leave` bytes are free (a real full disk, not a mock)."""
    filler = mount / "filler"
    free = shutil.disk_usage(mount).free - leave
    with filler.open("wb") as f:
        while free > 0:
            chunk = min(free, 1 << 20)
            f.write(b"\0" * chunk)
            free -= chunk
    return filler


@pytest.fixture(scope="module")
def full_disk_run(tmp_path_factory, tiny_model_dir, recipe):
    """A run on a 24 MB tmpfs whose disk is filled just before checkpoint-2 is written. Returns `(copy, error)`: a
    copy of the run's root on the ordinary disk after the failure, and the exception raised."""
    root = tmp_path_factory.mktemp("full-disk")
    mount = root / "mnt"
    if not _mount_tmpfs(mount):
        pytest.skip("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN); the real full-disk tests do not run")
    try:
        rows = mount / "rows.jsonl"
        rows.write_text("".join((REPO / "data" / "demo_train.jsonl").read_text().splitlines(True)[:12]))
        real = GraceTrainer.save_model

        def save_model(self, output_dir=None, _internal_call=False):
            if output_dir and Path(output_dir).name == "checkpoint-2":
                _fill(mount, LEFT_FREE)
            return real(self, output_dir, _internal_call)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(GraceTrainer, "save_model", save_model)
            with pytest.raises(CheckpointSaveError) as info:
                main(*parse_args(recipe(mount, tiny_model_dir, rows, **SETTINGS)))
        assert shutil.disk_usage(mount).free < LEFT_FREE + (1 << 20)  # still full: the filler is there
        copy = root / "copy"
        shutil.copytree(mount, copy, ignore=shutil.ignore_patterns("filler"))
    finally:
        subprocess.run(["umount", str(mount)], check=False)
    return copy, info.value


def _copy(full_disk_run, tmp_path: Path) -> Path:
    shutil.copytree(full_disk_run[0] / "run", tmp_path / "run")
    shutil.copy(full_disk_run[0] / "rows.jsonl", tmp_path / "rows.jsonl")
    return tmp_path / "run"


def _argv(tmp_path: Path, model_dir: Path, recipe, **extra) -> list[str]:
    return ["train", *recipe(tmp_path, model_dir, tmp_path / "rows.jsonl", **SETTINGS, **extra)]


def test_real_full_disk_fails_clearly_and_removes_the_partial_checkpoint(full_disk_run, tally):
    copy, error = full_disk_run
    out = copy / "run"
    message = str(error)
    assert "disk is full" in message and "checkpoint-2" in message and "Free disk space" in message
    assert "the last complete checkpoint is" in message and "checkpoint-1" in message
    assert not (out / "checkpoint-2").exists() and latest_checkpoint(out) == (out / "checkpoint-1").resolve()
    print(
        f"real full disk raised {type(error.__cause__).__module__}.{type(error.__cause__).__name__}: {error.__cause__}"
    )
    tally.fault_survived()


def test_resume_after_real_full_disk_loses_no_line(full_disk_run, tmp_path, tiny_model_dir, recipe, capsys, tally):
    out = _copy(full_disk_run, tmp_path)
    assert cli_main(_argv(tmp_path, tiny_model_dir, recipe, resume_from_checkpoint="true")) == 0
    steps, expected = [r["step"] for r in read_rationales(out)], [1] * 6 + [2] * 6 + [3] * 6
    tally.lines_lost(sum((Counter(expected) - Counter(steps)).values()))
    assert steps == expected
    assert json.loads((out / "grace_summary.json").read_text())["steps"] == 3


def test_plain_exception_on_full_disk_is_converted_and_cleaned_up(tmp_path, tally):
    """The tokenizers library reports ENOSPC as `Exception("No space left on device (os error 28)")`."""
    folder = tmp_path / "checkpoint-5"
    with pytest.raises(CheckpointSaveError, match="the disk is full") as info, checkpoint_guard(folder, True):
        folder.mkdir()
        (folder / "tokenizer.json").write_text("{half")
        raise Exception("No space left on device (os error 28)")  # noqa: TRY002 - what the library raises
    assert not folder.exists() and info.value.errno == 28 and "no complete checkpoint exists yet" in str(info.value)
    tally.fault_survived()


def _edit_marker(out: Path, **changes) -> None:
    path = out / "checkpoint-1" / CHECKPOINT_MARKER
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


FAULTS = [
    ("marker-log-size-zero", lambda o: _edit_marker(o, log_bytes={"rationales.jsonl": 0}), ["would drop records"]),
    ("marker-log-size-mid-line", lambda o: _edit_marker(o, log_bytes={"rationales.jsonl": 7}), ["middle of a line"]),
    ("marker-wrong-step", lambda o: _edit_marker(o, global_step=2), ["global_step 2", "checkpoint-1"]),
    (
        "marker-garbage",
        lambda o: (o / "checkpoint-1" / CHECKPOINT_MARKER).write_text("{oops"),
        ["grace_checkpoint.json", "unreadable"],
    ),
    (
        "adapter-truncated",
        lambda o: _truncate(o / "checkpoint-1" / "adapter_model.safetensors"),
        ["adapter_model.safetensors", "not a readable safetensors file"],
    ),
    ("optimizer-truncated", lambda o: _truncate(o / "checkpoint-1" / "optimizer.pt"), ["optimizer.pt", "truncated"]),
]


@pytest.mark.parametrize("damage, needles", [pytest.param(d, n, id=i) for i, d, n in FAULTS])
def test_damaged_checkpoint_is_refused_before_any_log_is_cut(
    damage, needles, full_disk_run, tmp_path, tiny_model_dir, recipe, capsys, tally
):
    out = _copy(full_disk_run, tmp_path)
    damage(out)
    logs = {p.name: p.read_bytes() for p in out.glob("*.jsonl")}
    assert cli_main(_argv(tmp_path, tiny_model_dir, recipe, resume_from_checkpoint="true")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoint-1" in err[0] and "resume from an earlier checkpoint" in err[0], err
    missing = [n for n in needles if n not in err[0]]
    assert not missing, f"message lacks {missing}: {err[0]}"
    assert {p.name: p.read_bytes() for p in out.glob("*.jsonl")} == logs
    tally.fault_survived()


@pytest.mark.parametrize(
    "changes, keys",
    [
        pytest.param({"lora_r": 8, "lora_alpha": 16}, ["lora_r: 4 -> 8", "lora_alpha: 8 -> 16"], id="lora-r"),
        pytest.param({"instruction": "Summarise the text."}, ["instruction:"], id="instruction"),
        pytest.param({"max_completion_length": 8}, ["max_completion_length: 6 -> 8"], id="max-completion-length"),
        pytest.param({"temperature": 0.7}, ["temperature: 1.0 -> 0.7"], id="temperature"),
    ],
)
def test_resume_with_other_settings_names_the_keys(
    changes, keys, full_disk_run, tmp_path, tiny_model_dir, recipe, capsys, tally
):
    out = _copy(full_disk_run, tmp_path)
    logs = {p.name: p.read_bytes() for p in out.glob("*.jsonl")}
    assert cli_main(_argv(tmp_path, tiny_model_dir, recipe, resume_from_checkpoint="true", **changes)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Cannot resume the run" in err[0], err
    assert all(k in err[0] for k in keys), err[0]
    assert {p.name: p.read_bytes() for p in out.glob("*.jsonl")} == logs
    tally.bad_input()
