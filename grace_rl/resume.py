"""Run identity and exact resume.

* **Run fingerprint** (`<output_dir>/grace_run.json`): what makes two runs the same run (data digest, model, seed,
  batch geometry, reward). A directory holding another run is refused unless `overwrite_output_dir`; resuming needs
  the same fingerprint.
* **Complete checkpoints**: HF Trainer writes `checkpoint-N` (weights as safetensors; `optimizer.pt`,
  `scheduler.pt`, `rng_state.pth`: pickles that this run wrote, loaded by HF with
  `torch.load(weights_only=True)`; `trainer_state.json`). GRACE then adds `corpus_index/` (the FAISS index and
  its staleness state, when a corpus is configured) and last `grace_checkpoint.json`: the commit point. A checkpoint
  without it was cut short (killed, disk full) and is never resumed from.
* **Logs at resume**: `grace_checkpoint.json` records the byte size of `rationales.jsonl` and `metrics.jsonl` at
  save time; resuming truncates them back to it, which drops every record written after the checkpoint (and a torn
  last line), so the resumed run neither duplicates nor loses a line.
* **Disk full**: a checkpoint save that fails with any exception (the tokenizers library raises a plain `Exception`
  on a full disk) removes its partial folder and raises :class:`CheckpointSaveError` naming the last complete
  checkpoint.
* **Checked at resume** (:mod:`grace_rl.checkpoint_check`): the marker's fields against the logs, and that the weights,
  optimizer and RNG files are readable, before any log is cut.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grace_rl.checkpoint_check import check_checkpoint, check_marker
from grace_rl.errors import GraceError, UserError
from grace_rl.run_files import (
    CHECKPOINT_MARKER,
    CORPUS_INDEX_DIR,
    FORMAT_VERSION,
    METRICS_LOG,
    RATIONALE_LOG,
    RUN_FILE,
    RUN_FILES,
    atomic_write,
)

if TYPE_CHECKING:
    from trl import ModelConfig

    from grace_rl.config import GraceConfig, GraceScriptArguments
    from rollout.corpus_index import CorpusIndex

logger = logging.getLogger(__name__)

TRAINER_STATE = "trainer_state.json"  # HF Trainer's, inside checkpoint-N
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
_TRUE = ("true", "last", "latest", "yes", "1")
RESUME_OFF = ("", "false", "none", "null", "no", "0")  # resume_from_checkpoint values that mean no resume


class RunMismatchError(UserError):
    """The output directory holds another run (or one that must be resumed or overwritten explicitly)."""


class CheckpointSaveError(OSError):
    """Writing a checkpoint failed (e.g. the disk is full); the partial checkpoint was removed."""


class CorpusIndexResumeError(RuntimeError, GraceError):
    """The checkpoint's corpus index is missing, corrupt, or built over another corpus."""


# ---- run fingerprint ---------------------------------------------------------------------------------------------


def digest(path: str | Path) -> str:
    """`sha256` of a file, or of a directory's files (relative names and contents, in sorted order)."""
    path = Path(path).expanduser()
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            h.update(str(file.relative_to(path)).encode("utf-8") + b"\0")
        with file.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):  # noqa: B023 - f is the loop's own file
                h.update(chunk)
    return h.hexdigest()


def run_fingerprint(
    script_args: GraceScriptArguments, args: GraceConfig, model_args: ModelConfig, model_path: str | Path
) -> dict[str, Any]:
    """What makes two runs the same run: resuming with any of these changed would not continue the run exactly."""
    task = script_args.task
    corpus = args.corpus_path
    return {
        "task": task,
        "dataset": digest(script_args.dataset_path),
        "max_train_rows": script_args.max_train_rows,
        "text_column": script_args.text_column if task == "unsupervised" else None,
        "model": str(model_path),
        "use_peft": bool(model_args.use_peft),
        "seed": args.seed,
        "world_size": args.world_size,
        "num_generations": args.num_generations,
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "steps_per_generation": args.steps_per_generation,
        "reward_terms": list(args.reward_terms),
        "term_weights": [float(w) for w in args.term_weights],
        "corpus": digest(corpus) if corpus else None,
        # what each step learns: resuming with another value trains a different run (or fails to load the adapter)
        "lora_r": model_args.lora_r if model_args.use_peft else None,
        "lora_alpha": model_args.lora_alpha if model_args.use_peft else None,
        "lora_target_modules": model_args.lora_target_modules if model_args.use_peft else None,
        "instruction": args.instruction,
        "max_completion_length": args.max_completion_length,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "learning_rate": args.learning_rate,
        "loss_type": args.loss_type,
        "beta": args.beta,
        "num_iterations": args.num_iterations,
        "pooling": args.pooling,
        "contrastive_temperature": args.contrastive_temperature,
        "embedding_loss_weight": args.embedding_loss_weight,
        **({"hard_negative_weight": args.hard_negative_weight} if args.hard_negative_weight != 1.0 else {}),
        **({"embedding_loss_prefixes": list(args.embedding_loss_prefixes)} if args.embedding_loss_prefixes else {}),
        **(
            {"mined_negatives": args.mined_negatives, "mined_negative_max_ratio": args.mined_negative_max_ratio}
            if args.mined_negatives
            else {}
        ),
        "anchor_mode": args.anchor_mode,
        "anchor_rationale_tokens": args.anchor_rationale_tokens,
        "anchor_temperature": args.anchor_temperature,
        "directions": list(args.directions),
        "direction_schedule": args.direction_schedule,
    }


def read_run_file(output_dir: str | Path) -> dict[str, Any] | None:
    """The fingerprint recorded in `output_dir` (`None` when there is none)."""
    path = Path(output_dir) / RUN_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))["fingerprint"]
    except (ValueError, KeyError, TypeError) as err:
        raise RunMismatchError(
            f"{path} is corrupt ({err}); delete it if the directory holds this run, or choose a new output_dir."
        ) from err


def fingerprint_diff(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Fields whose value differs: `{name: (recorded, now)}`. A field the recorded fingerprint lacks (a run started
    by an older grace-rl) is not compared."""
    keys = sorted(k for k in set(old) | set(new) if k in old)
    return {k: (old.get(k), new.get(k)) for k in keys if _normal(old.get(k)) != _normal(new.get(k))}


def _normal(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value  # JSON has no tuples


def _short(value: Any) -> str:
    text = f"{value[:12]}..." if isinstance(value, str) and len(value) == 64 else value  # digests
    text = repr(text)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe(diff: dict[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{k}: {_short(a)} -> {_short(b)}" for k, (a, b) in diff.items())


def run_contents(output_dir: Path) -> list[str]:
    """Names of the run artifacts (logs, fingerprint, checkpoints, corpus index) present in `output_dir`."""
    names = [n for n in (*RUN_FILES, CORPUS_INDEX_DIR) if (output_dir / n).exists()]
    return names + sorted(p.name for p in output_dir.glob("checkpoint-*") if p.is_dir())


def check_output_dir(
    output_dir: str | Path, fingerprint: dict[str, Any], resuming: bool, overwrite: bool
) -> list[str]:
    """Refuse an output directory that holds another run, or this run without an explicit resume/overwrite.

    Read-only. Returns the run artifacts found (which `overwrite` will delete)."""
    out = Path(output_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise RunMismatchError(f"output_dir {out} is a file, not a directory; choose another output_dir.")
    if not out.is_dir():
        return []
    found, recorded = run_contents(out), read_run_file(out)
    if not found and not overwrite:
        check_foreign_files(out)
    if found == [RUN_FILE] and not resuming:
        return found  # a start that failed before training: nothing to keep, start_run records this run
    diff = fingerprint_diff(recorded, fingerprint) if recorded is not None else {}
    if resuming:
        if diff:
            raise RunMismatchError(
                f"Cannot resume the run in {out}: it was started with other settings ({_describe(diff)}). Resume "
                "with the original settings, or start a new run from the checkpoint's weights (model_name_or_path="
                "<checkpoint dir>) in a new output_dir."
            )
        if recorded is None:
            logger.warning("%s has no %s (an older grace-rl run?); resuming without checking it.", out, RUN_FILE)
        return found
    if not found or overwrite:
        return found
    if diff:
        raise RunMismatchError(
            f"output_dir {out} holds a different run ({_describe(diff)}); choose a new output_dir, or pass "
            "--overwrite_output_dir true to replace it (its logs and checkpoints are deleted)."
        )
    raise RunMismatchError(
        f"output_dir {out} already holds a run ({', '.join(found)}); continue it with --resume_from_checkpoint "
        "true, start over with --overwrite_output_dir true (its logs and checkpoints are deleted), or choose a new "
        "output_dir."
    )


def check_foreign_files(out: Path) -> None:
    """Refuse a non-empty `output_dir` that is not a grace-rl run: training writes `README.md`,
    `tokenizer_config.json`, `adapter_*` ... there, replacing a user's files of the same names."""
    names = sorted(p.name for p in out.iterdir())
    if names:
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise RunMismatchError(
            f"output_dir {out} is not empty and holds no grace-rl run ({shown}); training would replace files there "
            "(README.md, tokenizer_config.json, ...). Choose a new or empty output_dir, or pass "
            "--overwrite_output_dir true to write into it anyway."
        )


def start_run(output_dir: str | Path, fingerprint: dict[str, Any], overwrite: bool, is_main: bool) -> None:
    """After the preflight passed: delete an overwritten run's artifacts and record this run's fingerprint."""
    out = Path(output_dir).expanduser()
    if not is_main:
        return
    if overwrite and out.is_dir():
        for name in run_contents(out):
            target = out / name
            logger.warning("overwrite_output_dir: deleting %s", target)
            shutil.rmtree(target) if target.is_dir() else target.unlink()
    out.mkdir(parents=True, exist_ok=True)
    if read_run_file(out) is None or run_contents(out) == [RUN_FILE]:  # none, or a failed start's
        atomic_write(out / RUN_FILE, json.dumps({"format": FORMAT_VERSION, "fingerprint": fingerprint}, indent=2))


# ---- checkpoints -------------------------------------------------------------------------------------------------


def is_complete(checkpoint: Path) -> bool:
    return (checkpoint / TRAINER_STATE).is_file() and (checkpoint / CHECKPOINT_MARKER).is_file()


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The complete `checkpoint-N` with the highest N (`None` when there is none)."""
    out = Path(output_dir).expanduser()
    steps = [(int(m.group(1)), p) for p in out.glob("checkpoint-*") if (m := _CHECKPOINT_RE.match(p.name))]
    complete = [(s, p) for s, p in steps if p.is_dir() and is_complete(p)]
    return max(complete)[1].resolve() if complete else None


def resolve_checkpoint(value: str | bool | Path | None, output_dir: str | Path) -> Path | None:
    """`resume_from_checkpoint` as a path: `true`/`last` = the latest complete checkpoint of `output_dir`;
    `false`/`none` = no resume. A path must be a complete checkpoint inside `output_dir`: resuming continues the
    logs next to it, and grace-rl only loads pickled optimizer/RNG state that its own run wrote."""
    if value is None or value is False:
        return None
    text = str(value).strip()
    if text.lower() in RESUME_OFF:
        return None
    out = Path(output_dir).expanduser().resolve()
    latest = latest_checkpoint(out)
    if value is True or text.lower() in _TRUE:
        if latest is None:
            raise FileNotFoundError(
                f"resume_from_checkpoint={value!r} but {out} holds no complete checkpoint (checkpoint-N with "
                f"{CHECKPOINT_MARKER}); train from scratch (--resume_from_checkpoint null) or fix output_dir."
            )
        return _checked(latest)
    path = Path(text).expanduser().resolve()
    if not path.is_dir():
        raise FileNotFoundError(f"resume_from_checkpoint {path} is not a directory; pass a checkpoint-N dir or true.")
    if path.parent != out:
        raise UserError(
            f"resume_from_checkpoint {path} is not a checkpoint of output_dir {out}. Resuming continues the run's "
            "logs next to its checkpoints, and grace-rl loads pickled optimizer/RNG state only from its own run: set "
            f"output_dir to {path.parent}."
        )
    if not is_complete(path):
        raise UserError(
            f"{path} is incomplete (no {TRAINER_STATE} or {CHECKPOINT_MARKER}: the run stopped while saving it); "
            f"resume from {latest or 'an earlier checkpoint'} instead (--resume_from_checkpoint true picks it)."
        )
    return _checked(path)


def check_not_finished(checkpoint: Path, max_steps: int, num_train_epochs: float) -> None:
    """Refuse to resume from a checkpoint that already reached the end of training (`max_steps`, or with
    `max_steps: -1` the same `num_train_epochs` run through): it would train past the end and append to the logs."""
    step = int(read_marker(checkpoint)["global_step"])
    end = max_steps if max_steps > 0 else None
    if end is None:
        try:
            state = json.loads((checkpoint / TRAINER_STATE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        same_epochs = state.get("num_train_epochs") == num_train_epochs
        end = state.get("max_steps") if same_epochs and isinstance(state.get("max_steps"), int) else None
    if end is not None and step >= end:
        what = f"max_steps {max_steps}" if max_steps > 0 else f"num_train_epochs {num_train_epochs} ({end} steps)"
        raise UserError(
            f"The run in {checkpoint.parent} is complete: {checkpoint.name} is at step {step}, and {what} ends "
            "there; nothing to resume, nothing was written. Raise max_steps (or num_train_epochs) to train further."
        )


def _checked(checkpoint: Path) -> Path:
    """`checkpoint` after its marker and files were checked (:mod:`grace_rl.checkpoint_check`)."""
    check_checkpoint(checkpoint)
    return checkpoint


def save_checkpoint_extras(folder: Path, output_dir: str | Path, global_step: int, index: CorpusIndex | None) -> None:
    """After HF's files: the corpus index, then the commit marker with the log sizes at this step."""
    if index is not None and index.is_built:
        index.save(folder / CORPUS_INDEX_DIR)
    out = Path(output_dir)
    logs = {name: (out / name).stat().st_size for name in (RATIONALE_LOG, METRICS_LOG) if (out / name).is_file()}
    marker = {"format": FORMAT_VERSION, "global_step": global_step, "log_bytes": logs}
    atomic_write(folder / CHECKPOINT_MARKER, json.dumps(marker, indent=2))


DISK_FULL_TEXT = (
    "no space left on device",
    "disk quota exceeded",
    "unexpected pos",  # torch.save's zip writer after a short write
    "file write failed",  # torch.save's PytorchStreamWriter
)


def is_disk_full(err: BaseException) -> bool:
    """`ENOSPC`/`EDQUOT`, also when a library re-raises it as a plain `Exception` (the tokenizers library does)."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return any(text in str(err).lower() for text in DISK_FULL_TEXT)


@contextmanager
def checkpoint_guard(folder: Path, is_main: bool) -> Iterator[None]:
    """Any failure while writing `folder` removes the partial folder (freeing the space it took); an `Exception` is
    re-raised as :class:`CheckpointSaveError` naming the last complete checkpoint (and whether the disk is full)."""
    existed = folder.exists()
    try:
        yield
    except BaseException as err:
        if is_main and not existed:
            shutil.rmtree(folder, ignore_errors=True)
        if not isinstance(err, Exception):  # KeyboardInterrupt, SystemExit: cleaned up, passed on
            raise
        previous = latest_checkpoint(folder.parent)
        full = is_disk_full(err)
        reason = "the disk is full" if full else f"{type(err).__name__}: {err}"
        code = errno.ENOSPC if full else getattr(err, "errno", None) or errno.EIO
        raise CheckpointSaveError(
            code,
            f"Saving {folder} failed: {reason} ({type(err).__name__}: {err}). The partial checkpoint was removed. "
            + restart_advice(folder.parent, "Free disk space" if full else "Fix the cause", previous),
        ) from err


def restart_advice(output_dir: Path, first: str, previous: Path | None = None) -> str:
    """Where the run can go on from: the last complete checkpoint, or none yet (start over)."""
    previous = previous if previous is not None else latest_checkpoint(output_dir)
    if previous is not None:
        return f"{first}, then resume with --resume_from_checkpoint true: the last complete checkpoint is {previous}."
    return (
        f"{first}; the last complete checkpoint: none yet (no complete checkpoint exists yet) - start over with "
        "--overwrite_output_dir true."
    )


# ---- resume ------------------------------------------------------------------------------------------------------


def truncate_log(path: Path, size: int) -> int:
    """Cut `path` back to `size` bytes (its size when the checkpoint was saved); returns the lines dropped."""
    if not path.is_file():
        if size:
            logger.warning("%s is missing; the records before the checkpoint (%d bytes) are gone.", path, size)
        return 0
    current = path.stat().st_size
    if current < size:
        logger.warning("%s has %d bytes, fewer than the %d it had at the checkpoint; appending.", path, current, size)
        return 0
    with path.open("r+b") as f:
        f.seek(size)
        tail = f.read()
        f.truncate(size)
        f.flush()
        os.fsync(f.fileno())
    dropped = tail.count(b"\n") + (0 if not tail or tail.endswith(b"\n") else 1)
    if dropped:
        logger.info("Resume: dropped %d line(s) of %s written after the checkpoint.", dropped, path.name)
    return dropped


def read_marker(checkpoint: Path) -> dict[str, Any]:
    """The checkpoint's commit marker, checked (see :func:`grace_rl.checkpoint_check.check_marker`)."""
    return check_marker(checkpoint, checkpoint.parent)


def load_checkpoint_index(index: CorpusIndex, checkpoint: Path, rebuild: bool) -> CorpusIndex | None:
    """The checkpoint's corpus index, checked against the run's (unbuilt) `index`: same corpus, same settings.

    Returns `None` when it is unusable and `rebuild` (the caller re-embeds the corpus); raises
    :class:`CorpusIndexResumeError` when it is unusable otherwise.
    """
    from rollout.corpus_index import CorpusIndex

    directory = checkpoint / CORPUS_INDEX_DIR
    try:
        loaded = CorpusIndex.load(directory, use_gpu=index.settings.use_gpu)
        if loaded.corpus.doc_ids != index.corpus.doc_ids or loaded.corpus.texts != index.corpus.texts:
            raise UserError("it was built over another corpus than corpus_path")
        if asdict(loaded.settings) != asdict(index.settings):
            raise UserError(
                f"its settings {asdict(loaded.settings)} differ from the config's {asdict(index.settings)}"
            )
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as err:
        if not rebuild:
            raise CorpusIndexResumeError(
                f"Cannot restore the corpus index of {checkpoint} from {directory}: {err}. Resume from another "
                "checkpoint, or set rebuild_index_on_resume: true to re-embed the corpus with the checkpoint's "
                "weights (its staleness history restarts)."
            ) from err
        logger.warning("Corpus index of %s unusable (%s); re-embedding it with its weights.", checkpoint, err)
        return None
    logger.info("Resume: corpus index restored from %s (cursor %d)", directory, loaded.cursor)
    return loaded


def truncate_logs(output_dir: str | Path, checkpoint: Path) -> dict[str, int]:
    """Cut the run's logs back to their size when `checkpoint` was saved; returns the lines dropped per log."""
    marker = read_marker(checkpoint)
    out = Path(output_dir)
    dropped = {name: truncate_log(out / name, size) for name, size in marker.get("log_bytes", {}).items()}
    logger.info("Resuming from %s (step %d)", checkpoint, marker["global_step"])
    return dropped
