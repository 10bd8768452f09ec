"""Issue 31 (reliability, round three): no command may destroy a run, hang, or silently misalign its output.

Classes: 1 an output path on a run's file is refused, for every writing command and every file a run holds; 2 a
finished run is not resumed past `max_steps`; 3 a named pipe as input is refused, not read twice (a hang); 5 a full
disk while appending a log or inside `torch.save` is named, with the last complete checkpoint or "none yet"; 7
`encode` keeps row i = line i (an empty line is refused); 8 the smaller ones; 9 a bug is an "internal error" with its
traceback, not a one-line "bad input". Classes 4 and 6 (duplicate keys, list shapes) are cases of
`test_bad_inputs_cli.py`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import threading
from pathlib import Path

import pytest

from grace_rl import errors
from grace_rl.cli import main as cli_main
from grace_rl.rationale_log import RationaleLog
from grace_rl.resume import CHECKPOINT_MARKER, CheckpointSaveError, checkpoint_guard
from grace_rl.run_files import RUN_FILE, atomic_write, write_error
from grace_rl.train import main, parse_args

pytestmark = pytest.mark.faults


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


# ---- a trained run (classes 1, 2 and the unsafe pickle of class 8) -------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_model_dir):
    """A tiny run trained to its end (max_steps 1, checkpoint-1 saved). Returns `(root, rows, settings)`."""
    from ..recipes import write_recipe

    root = tmp_path_factory.mktemp("finished-run")
    rows = root / "rows.jsonl"
    repo = Path(__file__).resolve().parents[2]
    rows.write_text("".join((repo / "data" / "demo_train.jsonl").read_text().splitlines(True)[:6]))
    settings = dict(max_steps=1, save_strategy="steps", save_steps=1, reward_terms=["contrastive"], term_weights=[1.0])
    main(*parse_args(write_recipe(root, tiny_model_dir, rows, **settings)))
    assert (root / "run" / "checkpoint-1" / CHECKPOINT_MARKER).is_file()
    return root, rows, settings


def _writers(run: Path, target: Path, model: Path) -> dict[str, list[list[str]]]:
    """Every command that writes a file, aimed at `target` (for a prefix option also at its stem, so that
    PREFIX.json / PREFIX.png is the target)."""
    elsewhere = run.parent / "elsewhere"
    prefixes = [str(target)] + ([str(target.with_suffix(""))] if target.suffix in (".json", ".png") else [])
    encode = ["encode", "--model", str(model), "--input", str(elsewhere / "in.txt")]
    sts = ["eval", "sts", "--model", str(model), "--data", str(elsewhere / "sts.tsv"), "--scaling", "0,1"]
    retrieval = ["eval", "retrieval", "--model", str(model), "--corpus", str(elsewhere / "c.jsonl")]
    retrieval += ["--queries", str(elsewhere / "q.jsonl"), "--qrels", str(elsewhere / "qrels.tsv"), "--scaling", "0,1"]
    return {
        "report": [["report", str(run), "-o", str(target)]],
        "encode": [[*encode, "--output", str(target)]],
        "eval-sts": [[*sts, "--scaling-out", p] for p in prefixes],
        "eval-sts-samples": [[*sts[:-2], "--scaling-samples", "1,2", "--scaling-out", p] for p in prefixes],
        "eval-retrieval": [[*retrieval, "--scaling-out", p] for p in prefixes],
        "eval-protocol": [["eval", "protocol", "--trained", str(run), "--out", p, "--no-cache"] for p in prefixes],
        "eval-retrieval-protocol": [
            ["eval", "retrieval-protocol", "--data-dir", str(elsewhere / "scifact"), "--out", str(target)]
        ],
        # a folder option: the file itself, and the folder holding it (the run, checkpoint-N/, corpus_index/)
        "baseline": [
            ["baseline", "--output-dir", str(folder), "--model", str(model), "--data", str(elsewhere / "rows.jsonl")]
            for folder in (target, target.parent)
        ],
    }


WRITERS = [
    "report",
    "encode",
    "eval-sts",
    "eval-sts-samples",
    "eval-retrieval",
    "eval-protocol",
    "eval-retrieval-protocol",
    "baseline",
]


@pytest.mark.slow  # trains the tiny run once per module (~20 s idle)
@pytest.mark.parametrize("command", WRITERS)
def test_no_output_path_lands_on_a_file_of_the_run(command, trained_run, tiny_model_dir, tally, capsys):
    """Every writing command x every file the run holds (weights, tokenizer, configs, logs, checkpoint files): refused
    with one line before any work, and the run is byte-for-byte intact. (`inspect` writes nothing.)"""
    root, _, _ = trained_run
    run = root / "run"
    before = _snapshot(run)
    assert len(before) > 20 and "checkpoint-1/optimizer.pt" in before and "adapter_model.safetensors" in before
    for name in before:
        for argv in _writers(run, run / name, tiny_model_dir)[command]:
            code = cli_main(argv)
            line = _one_line(capsys)
            refused = any(
                why in line
                for why in ("is a file of the run in", "is an input of this command", "is the folder of the run")
            )  # "an input": report's logs; "the folder": baseline --output-dir RUN
            assert code == 2 and refused, (argv, line)
    assert _snapshot(run) == before
    tally.bad_input()


@pytest.mark.slow
def test_writing_next_to_a_run_is_allowed(trained_run, capsys):
    """The documented `report RUN -o RUN/report.html` works, also when run again (report.html is not a run file)."""
    run = trained_run[0] / "run"
    for _ in range(2):
        assert cli_main(["report", str(run), "-o", str(run / "report.html")]) == 0
    assert (run / "report.html").stat().st_size > 0
    capsys.readouterr()


@pytest.mark.slow
def test_resuming_a_finished_run_writes_nothing(trained_run, tiny_model_dir, tmp_path, tally, capsys):
    root, rows, settings = trained_run
    from ..recipes import write_recipe

    shutil.copytree(root / "run", tmp_path / "run")
    before = _snapshot(tmp_path / "run")
    argv = write_recipe(tmp_path, tiny_model_dir, rows, **settings, resume_from_checkpoint="true")
    assert cli_main(["train", *argv]) == 2
    line = _one_line(capsys)
    assert "is complete" in line and "checkpoint-1 is at step 1" in line and "max_steps 1" in line
    assert "nothing was written" in line
    assert _snapshot(tmp_path / "run") == before  # no checkpoint-2, no appended log line
    tally.bad_input()


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.slow
def test_a_malicious_pickle_in_a_checkpoint_is_one_line(trained_run, tiny_model_dir, tmp_path, tally, capsys):
    import torch

    root, rows, settings = trained_run
    from ..recipes import write_recipe

    shutil.copytree(root / "run", tmp_path / "run")
    torch.save({"state": _RunsCode()}, tmp_path / "run" / "checkpoint-1" / "rng_state.pth")
    argv = write_recipe(tmp_path, tiny_model_dir, rows, **{**settings, "max_steps": 2}, resume_from_checkpoint="true")
    assert cli_main(["train", *argv]) == 2
    line = _one_line(capsys)
    assert "rng_state.pth: not a safe checkpoint file" in line and "do not load it" in line, line
    assert "weights_only=False" not in line
    tally.bad_input()


# ---- class 3: a named pipe ---------------------------------------------------------------------------------------


def _run_unblocked(argv: list[str], fifo: Path, timeout: float = 60) -> int:
    """`cli_main(argv)` in a thread; a command still blocked on the pipe after `timeout` fails the test (the pipe
    is fed end-of-file until the thread ends, so the suite goes on)."""
    result: dict[str, int] = {}
    worker = threading.Thread(target=lambda: result.setdefault("code", cli_main(argv)), daemon=True)
    worker.start()
    worker.join(timeout=timeout)
    if worker.is_alive():  # the old code blocks in open() of the pipe (once per read): give it ends of file
        for _ in range(50):
            with contextlib.suppress(OSError):
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            worker.join(timeout=0.2)
            if not worker.is_alive():
                break
        pytest.fail(f"{argv[0]} blocked reading the named pipe {fifo}")
    return result["code"]


def test_a_named_pipe_as_dataset_is_refused_not_a_hang(tmp_path, tiny_model_dir, recipe, tally, capsys):
    fifo = tmp_path / "rows.jsonl"
    os.mkfifo(fifo)
    assert _run_unblocked(["train", *recipe(tmp_path, tiny_model_dir, fifo)], fifo) == 2
    line = _one_line(capsys)
    assert "rows.jsonl: is a named pipe (FIFO), not a regular file" in line and "dataset_path" in line
    assert not (tmp_path / "run").exists()
    tally.bad_input()


def test_a_named_pipe_as_recipe_or_sts_file_is_refused(tmp_path, tiny_model_dir, tally, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert _run_unblocked(["train", "--config", str(fifo)], fifo, timeout=20) == 2
    assert "--config" in (line := _one_line(capsys)) and "named pipe" in line
    assert _run_unblocked(["eval", "sts", "--model", str(tiny_model_dir), "--data", str(fifo)], fifo, timeout=20) == 2
    assert "named pipe" in _one_line(capsys)
    tally.bad_input()


# ---- class 5: a full disk outside a checkpoint, or inside torch.save ---------------------------------------------


def _fsync_full(monkeypatch):
    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("grace_rl.rationale_log.os.fsync", fsync)


def test_disk_full_appending_a_log_names_it_and_leaves_no_half_line(tmp_path, monkeypatch, tally):
    run = tmp_path / "run"
    run.mkdir()
    (run / RUN_FILE).write_text("{}")
    log = RationaleLog(run / "rationales.jsonl")
    log.append([{"step": 1, "rationale": "kept"}])
    before = (run / "rationales.jsonl").read_bytes()
    _fsync_full(monkeypatch)
    with pytest.raises(OSError) as info:
        log.append([{"step": 2, "rationale": "x" * 1000}] * 3)
    message = errors.one_line(info.value)
    assert info.value.errno == errno.ENOSPC and str(run / "rationales.jsonl") in message
    assert "the disk is full" in message and "none yet" in message and "--overwrite_output_dir true" in message
    assert (run / "rationales.jsonl").read_bytes() == before  # the half-written step is cut off
    fresh = RationaleLog(run / "metrics.jsonl")
    with pytest.raises(OSError, match="the disk is full"):
        fresh.append([{"step": 1, "loss": 0.5}])
    assert not (run / "metrics.jsonl").exists()  # no empty log left behind as if the run had started logging
    tally.fault_survived()


def test_disk_full_appending_a_log_names_the_last_checkpoint(tmp_path, monkeypatch):
    run = tmp_path / "run"
    (run / "checkpoint-3").mkdir(parents=True)
    (run / "checkpoint-3" / "trainer_state.json").write_text("{}")
    (run / "checkpoint-3" / CHECKPOINT_MARKER).write_text("{}")
    _fsync_full(monkeypatch)
    with pytest.raises(OSError) as info:
        RationaleLog(run / "rationales.jsonl").append([{"step": 4}])
    message = str(info.value)
    assert "the last complete checkpoint is" in message and "checkpoint-3" in message
    assert "--resume_from_checkpoint true" in message


def test_disk_full_inside_torch_save_is_recognised(tmp_path, tally):
    """torch.save's zip writer reports a short write as `RuntimeError ... unexpected pos`, not ENOSPC."""
    folder = tmp_path / "run" / "checkpoint-1"
    with pytest.raises(CheckpointSaveError) as info, checkpoint_guard(folder, True):
        folder.mkdir(parents=True)
        (folder / "optimizer.pt").write_bytes(b"PK\x03\x04half")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 8768 vs 8660")
    message = str(info.value)
    assert "the disk is full" in message and "Fix the cause" not in message
    assert (
        "none yet" in message and "--overwrite_output_dir true" in message and "resume_from_checkpoint" not in message
    )
    assert not folder.exists()
    tally.fault_survived()


def test_write_errors_name_the_destination_not_a_temp_file(tmp_path):
    with pytest.raises(OSError) as info:
        atomic_write(tmp_path / "missing" / "out.npy", b"x")
    message = errors.one_line(info.value)
    assert ".tmp-" not in message and str(tmp_path / "missing" / "out.npy") in message and "does not exist" in message
    denied = write_error(tmp_path / "ro" / "out.html", PermissionError(errno.EACCES, "Permission denied", "/x/.tmp"))
    assert "not writable" in str(denied) and ".tmp" not in str(denied)
    full = write_error(tmp_path / "out.html", OSError(errno.ENOSPC, "No space left on device"))
    assert "the disk is full" in str(full)


# ---- class 7: encode keeps one row per line ------------------------------------------------------------------------


def test_encode_refuses_an_empty_line_before_loading_the_model(tmp_path, monkeypatch, tally, capsys):
    from grace_rl.encoder import GraceEncoder

    monkeypatch.setattr(GraceEncoder, "from_pretrained", classmethod(lambda *a, **k: pytest.fail("model loaded")))
    source = tmp_path / "in.txt"
    source.write_text("one\ntwo\n\nfour\nfive\n")
    assert cli_main(["encode", "--input", str(source), "--output", str(tmp_path / "e.npy")]) == 2
    line = _one_line(capsys)
    assert f"{source}:3: line 3 is empty" in line and "row i of the output is line i" in line
    assert not (tmp_path / "e.npy").exists()
    tally.bad_input()


def test_encode_writes_one_row_per_line_and_says_so(tmp_path, tiny_model_dir, capsys):
    import numpy as np

    source = tmp_path / "in.txt"
    source.write_text("one\ntwo\nthree\r\nfour\nfive\n")
    argv = ["encode", "--model", str(tiny_model_dir), "--input", str(source), "--output", str(tmp_path / "e.npy")]
    assert cli_main([*argv, "--max-rationale-tokens", "0"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["texts"] == 5 and np.load(tmp_path / "e.npy").shape[0] == 5
    assert out["rows"].startswith("row i is line i of")


# ---- class 8: the smaller ones -------------------------------------------------------------------------------------


def test_encode_checks_output_folder_and_batch_size_first(tmp_path, monkeypatch, tally, capsys):
    from grace_rl.encoder import GraceEncoder

    monkeypatch.setattr(GraceEncoder, "from_pretrained", classmethod(lambda *a, **k: pytest.fail("model loaded")))
    source = tmp_path / "in.txt"
    source.write_text("one\ntwo\n")
    missing = tmp_path / "no" / "such" / "e.npy"
    assert cli_main(["encode", "--input", str(source), "--output", str(missing)]) == 2
    line = _one_line(capsys)
    assert f"the folder {missing.parent} does not exist" in line and "mkdir -p" in line and ".tmp" not in line
    good = ["encode", "--input", str(source), "--output", str(tmp_path / "e.npy")]
    assert cli_main([*good, "--batch-size", "0"]) == 2
    assert "batch_size must be >= 1" in _one_line(capsys)
    tally.bad_input()


def test_protocol_checks_batch_size_before_loading_a_model(tmp_path, monkeypatch, tally, capsys):
    import grace_rl.eval.protocol as protocol

    monkeypatch.setattr(protocol, "model_specs", lambda *a, **k: pytest.fail("runs resolved before the options"))
    assert cli_main(["eval", "protocol", "--batch-size", "0", "--out", str(tmp_path / "q")]) == 2
    assert "--batch-size must be >= 1, got 0" in _one_line(capsys)
    tally.bad_input()


def test_inspect_a_run_in_its_first_step(tmp_path, tally, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / RUN_FILE).write_text(json.dumps({"format": 1, "fingerprint": {}}))
    assert cli_main(["inspect", str(run)]) == 2
    line = _one_line(capsys)
    assert "has not finished its first step" in line and "rationale_log: true" not in line
    tally.bad_input()


# ---- class 9: the error net ----------------------------------------------------------------------------------------


def test_a_library_value_error_is_an_internal_error_with_traceback(tmp_path, monkeypatch, tally, capsys):
    """A ValueError from inside a library call (here the report's page builder) is a bug: exit 1, `internal error`,
    the traceback and where to report it; a UserError of ours stays one line (exit 2)."""
    import grace_rl.inspection.report as report

    def broken(*args, **kwargs):
        raise ValueError("operands could not be broadcast together with shapes (3,) (4,)")

    run = tmp_path / "run"
    run.mkdir()
    record = {"step": 1, "prompt_id": "a", "prompt": "p", "rationale": "r", "rewards": {"c": 1.0}, "reward": 1.0}
    (run / "rationales.jsonl").write_text(json.dumps(record) + "\n")
    monkeypatch.setattr(report, "build_report", broken)
    assert cli_main(["report", str(run), "-o", str(tmp_path / "r.html")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("internal error: ValueError: operands could not be broadcast")
    assert "Traceback (most recent call last)" in err and "in broken" in err and "Please report it" in err
    assert "error: " + "operands" not in err.splitlines()[0][:7]

    def ours():
        raise errors.UserError("recipe.yaml:3: bad value - fix it.")

    assert errors.run_command(ours) == 2
    assert capsys.readouterr().err == "error: recipe.yaml:3: bad value - fix it.\n"
    with pytest.raises(ValueError):
        errors.run_command(lambda: broken(), debug=True)
    tally.bad_input()
