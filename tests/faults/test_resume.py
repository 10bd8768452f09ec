"""Exact resume: a CPU run SIGKILLed mid-training and resumed from its last checkpoint writes the same rationale log
(steps, data order, rationales), metrics and corpus-index state as a run that was never interrupted; the log
trimming and checkpoint bookkeeping on their own."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from grace_rl.inspection.log import read_rationales
from grace_rl.rationale_log import RationaleLog
from grace_rl.resume import (
    CHECKPOINT_MARKER,
    RunMismatchError,
    check_output_dir,
    latest_checkpoint,
    read_run_file,
    resolve_checkpoint,
    start_run,
    truncate_log,
)
from grace_rl.train import main, parse_args

pytestmark = pytest.mark.faults
REPO = Path(__file__).resolve().parents[2]
HF_PICKLES = {"optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin"}  # written by this run


def _keys(records: list[dict]) -> list[tuple]:
    """One key per rollout: (step, prompt_id, k-th rollout of that prompt in that step)."""
    seen: Counter = Counter()
    keys = []
    for r in records:
        seen[(r["step"], r["prompt_id"])] += 1
        keys.append((r["step"], r["prompt_id"], seen[(r["step"], r["prompt_id"])]))
    return keys


def _steps_logged(path: Path) -> set[int]:
    if not path.is_file():
        return set()
    steps = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):  # a line being written
            steps.add(json.loads(line)["step"])
    return steps


def _kill_when(proc: subprocess.Popen, log: Path, step: int, timeout: float) -> None:
    """SIGKILL ``proc`` as soon as rollouts of ``step`` are in the rationale log (mid-step: after generation)."""
    deadline = time.monotonic() + timeout
    while step not in _steps_logged(log):
        assert proc.poll() is None, f"the run ended (rc {proc.returncode}) before step {step}"
        assert time.monotonic() < deadline, f"no step {step} rollouts after {timeout}s"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path, tiny_model_dir, dcg_data, recipe, dcg_args, tally):
    rows, corpus = dcg_data
    settings = dict(max_steps=4, save_strategy="steps", save_steps=1, **dcg_args(corpus))
    ref_root, kill_root = tmp_path / "ref", tmp_path / "kill"
    ref_root.mkdir(), kill_root.mkdir()
    main(*parse_args(recipe(ref_root, tiny_model_dir, rows, **settings)))

    argv = recipe(kill_root, tiny_model_dir, rows, **settings)
    out = kill_root / "run"
    with (kill_root / "train.log").open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "scripts" / "train_grace.py"), *argv], cwd=REPO, stdout=log, stderr=log
        )
        try:
            _kill_when(proc, out / "rationales.jsonl", step=3, timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == -signal.SIGKILL
    with (out / "rationales.jsonl").open("a") as f:
        f.write('{"step": 3, "prompt_id": "demo-00')  # and a torn line, as a kill inside a write leaves
    killed_at = latest_checkpoint(out)
    assert killed_at is not None and killed_at.name in ("checkpoint-2", "checkpoint-3")

    summary = main(*parse_args(recipe(kill_root, tiny_model_dir, rows, **settings, resume_from_checkpoint="true")))
    assert summary["steps"] == 4

    ref, res = list(read_rationales(ref_root / "run")), list(read_rationales(out))
    lost = sum((Counter(_keys(ref)) - Counter(_keys(res))).values())
    duplicated = sum((Counter(_keys(res)) - Counter(_keys(ref))).values())
    tally.lines_lost(lost)
    assert lost == 0 and duplicated == 0
    assert [r["step"] for r in res] == [r["step"] for r in ref] == [s for s in range(1, 5) for _ in range(6)]
    assert [(r["step"], r["prompt_id"]) for r in res] == [(r["step"], r["prompt_id"]) for r in ref]  # data order
    assert [r["rationale"] for r in res] == [r["rationale"] for r in ref]  # RNG and weights restored
    for a, b in zip(res, ref, strict=True):
        assert a["reward"] == pytest.approx(b["reward"], abs=1e-4)

    def train_steps(run: Path) -> list[int]:
        return [m["step"] for m in read_rationales(run / "metrics.jsonl") if "loss" in m]

    assert train_steps(out) == train_steps(ref_root / "run") == [1, 2, 3, 4]

    def index_state(run: Path) -> dict:
        meta = json.loads((run / "corpus_index" / "corpus_index.json").read_text())
        return {k: meta[k] for k in ("cursor", "versions", "refreshed", "recent")}

    assert index_state(out) == index_state(ref_root / "run")  # staleness state continued, not rebuilt
    for checkpoint in out.glob("checkpoint-*"):  # weights we write are safetensors; HF's own pickles stay inside
        names = {p.name for p in checkpoint.iterdir()}
        assert "adapter_model.safetensors" in names
        assert {n for n in names if n.endswith((".bin", ".pt", ".pth"))} <= HF_PICKLES
    tally.fault_survived()


# ---- bookkeeping without training ---------------------------------------------------------------------------------


def _fake_checkpoint(out: Path, step: int, log_bytes: dict[str, int]) -> Path:
    folder = out / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (folder / CHECKPOINT_MARKER).write_text(json.dumps({"format": 1, "global_step": step, "log_bytes": log_bytes}))
    return folder


def test_torn_log_line_at_resume_is_cut_with_the_records_after_the_checkpoint(tmp_path, tally):
    out = tmp_path / "run"
    log = RationaleLog(out / "rationales.jsonl")
    for step in (1, 2):
        log.append([{"step": step, "prompt_id": p, "rationale": "r"} for p in ("a", "b")])
    size = log.path.stat().st_size
    _fake_checkpoint(out, 2, {"rationales.jsonl": size})
    log.append([{"step": 3, "prompt_id": p, "rationale": "r"} for p in ("a", "b")])
    with log.path.open("a") as f:
        f.write('{"step": 3, "prompt_id": "c", "ratio')  # killed mid-write
    checkpoint = resolve_checkpoint("true", out)
    assert checkpoint.name == "checkpoint-2"
    assert truncate_log(log.path, size) == 3  # the 2 step-3 records and the torn line
    log.append([{"step": 3, "prompt_id": p, "rationale": "again"} for p in ("a", "b")])
    records = list(read_rationales(log.path))
    assert [(r["step"], r["prompt_id"]) for r in records] == [
        (1, "a"),
        (1, "b"),
        (2, "a"),
        (2, "b"),
        (3, "a"),
        (3, "b"),
    ]
    tally.lines_lost(0)
    tally.fault_survived()


def test_latest_checkpoint_skips_incomplete_ones(tmp_path):
    out = tmp_path / "run"
    _fake_checkpoint(out, 2, {})
    _fake_checkpoint(out, 10, {})
    (out / "checkpoint-11").mkdir()  # killed while HF was writing it
    (out / "checkpoint-11" / "trainer_state.json").write_text("{}")  # ... or before our marker
    assert latest_checkpoint(out).name == "checkpoint-10"  # 10 > 2 numerically, 11 incomplete
    assert resolve_checkpoint("null", out) is None and resolve_checkpoint(None, out) is None
    assert resolve_checkpoint(str(out / "checkpoint-2"), out).name == "checkpoint-2"


def test_truncate_log_never_grows_or_invents_a_file(tmp_path):
    path = tmp_path / "rationales.jsonl"
    assert truncate_log(path, 0) == 0 and not path.exists()
    path.write_text('{"step": 1}\n')
    assert truncate_log(path, 100) == 0 and path.read_text() == '{"step": 1}\n'
    os.truncate(path, 0)
    assert truncate_log(path, 0) == 0


def test_overwrite_deletes_only_the_runs_artifacts_and_records_the_new_fingerprint(tmp_path):
    out = tmp_path / "run"
    start_run(out, {"seed": 1}, overwrite=False, is_main=True)
    RationaleLog(out / "rationales.jsonl").append([{"step": 1}])
    _fake_checkpoint(out, 1, {})
    (out / "notes.txt").write_text("the user's own file")
    assert read_run_file(out) == {"seed": 1}
    with pytest.raises(RunMismatchError, match="seed: 1 -> 2"):
        check_output_dir(out, {"seed": 2}, resuming=False, overwrite=False)
    with pytest.raises(RunMismatchError, match="already holds a run"):
        check_output_dir(out, {"seed": 1}, resuming=False, overwrite=False)
    assert check_output_dir(out, {"seed": 1}, resuming=True, overwrite=False)  # resuming the same run is fine
    with pytest.raises(RunMismatchError, match="Cannot resume"):
        check_output_dir(out, {"seed": 2}, resuming=True, overwrite=False)
    found = check_output_dir(out, {"seed": 2}, resuming=False, overwrite=True)
    assert set(found) == {"grace_run.json", "rationales.jsonl", "checkpoint-1"}
    start_run(out, {"seed": 2}, overwrite=True, is_main=True)
    assert sorted(p.name for p in out.iterdir()) == ["grace_run.json", "notes.txt"]
    assert read_run_file(out) == {"seed": 2}
