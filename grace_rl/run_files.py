"""What a run writes to its `output_dir`: the file names, the guard that keeps a command's output off a run's files,
and the atomic write, the JSONL reader and the regular-file check (from `rollout.files`, re-exported here).

Standard library only, so the inspector (`grace_rl.inspection`) and the trainer can both use it.

Layout of an output directory:

    grace_run.json          run fingerprint (`grace_rl.resume`)
    rationales.jsonl        one record per rollout per step (`grace_rl.rationale_log.RationaleLog`)
    metrics.jsonl           one trainer log per line (`grace_rl.rationale_log.MetricsLogCallback`)
    grace_summary.json      STS before/after, seconds per step, paths (`grace_rl.train.main`)
    corpus_index/           the FAISS corpus index (`rollout.corpus_index.CorpusIndex.save`)
    checkpoint-N/           HF Trainer's checkpoint + corpus_index/ + grace_checkpoint.json (written last)
"""

from __future__ import annotations

import errno
import fnmatch
import os
from pathlib import Path

from grace_rl.errors import UserError
from rollout.files import (
    DuplicateKeyError,
    JsonlError,
    atomic_write,
    check_regular_file,
    iter_jsonl,
    read_jsonl,
    unique_keys,
    write_error,
)

__all__ = [
    "DuplicateKeyError",
    "JsonlError",
    "atomic_write",
    "check_regular_file",
    "check_writable_folder",
    "iter_jsonl",
    "read_jsonl",
    "refuse_output_dir",
    "refuse_outputs",
    "refuse_overwriting",
    "run_file_owner",
    "unique_keys",
    "write_error",
]

RUN_FILE = "grace_run.json"
RATIONALE_LOG = "rationales.jsonl"
METRICS_LOG = "metrics.jsonl"
SUMMARY_FILE = "grace_summary.json"
CORPUS_INDEX_DIR = "corpus_index"
CHECKPOINT_MARKER = "grace_checkpoint.json"
FORMAT_VERSION = 1  # "format" of grace_run.json and of each checkpoint's grace_checkpoint.json
RUN_FILES = (RUN_FILE, RATIONALE_LOG, METRICS_LOG, SUMMARY_FILE)  # plus checkpoint-*/ and corpus_index/


# What training writes into a run directory, besides RUN_FILES: weights, tokenizer, configs, the model card. An
# output path naming one of these inside a run directory (or any file under its checkpoint-N/ or corpus_index/)
# is refused: `report RUN -o RUN/adapter_model.safetensors` would leave the run unusable.
RUN_FILE_PATTERNS = (
    *RUN_FILES,
    "grace_config.json",
    "README.md",
    "config.json",
    "generation_config.json",
    "adapter_config.json",
    "training_args.bin",
    "chat_template.jinja",
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "*.safetensors",
    "*.safetensors.index.json",
    "*.bin",
    "*.pt",
    "*.pth",
    "*.faiss",
)
RUN_MARKERS = (RUN_FILE, "grace_config.json", CHECKPOINT_MARKER)  # a folder holding one of these is a run's


def run_file_owner(target: Path) -> Path | None:
    """The run directory whose file `target` (resolved, existing) is, or `None`.

    A run directory holds :data:`RUN_MARKERS` (a training `output_dir`, or one of its `checkpoint-N`). `target` is a
    run file when it lies under the run's `checkpoint-N/` or `corpus_index/`, or matches :data:`RUN_FILE_PATTERNS`.
    """
    for depth, folder in enumerate(target.parents):
        if depth > 3:
            return None
        if not any((folder / marker).is_file() for marker in RUN_MARKERS):
            continue
        inner = target.relative_to(folder).parts
        if len(inner) > 1 and (inner[0].startswith("checkpoint-") or inner[0] == CORPUS_INDEX_DIR):
            return folder
        if len(inner) == 1 and any(fnmatch.fnmatch(target.name, pattern) for pattern in RUN_FILE_PATTERNS):
            return folder
    return None


def refuse_overwriting(
    out: str | Path, inputs: list[str | Path], flag: str = "-o", folder_must_exist: bool = False
) -> Path:
    """`out`, resolved, unless it is one of `inputs` (after resolving links), a directory, or an existing file of a
    run directory (:func:`run_file_owner`: weights, tokenizer, configs, logs, checkpoints): writing there would
    destroy what is being read, or the run. Also checked here, before the work: `out`'s folder exists (or can be
    made) and is writable.

    Args:
        out (`str` or `Path`):
            The output file.
        inputs (`list[str | Path]`):
            The files the command reads.
        flag (`str`, *optional*, defaults to `"-o"`):
            The option that named `out` (for the message).
        folder_must_exist (`bool`, *optional*, defaults to `False`):
            Refuse a missing folder (the command does not create it) instead of checking that it can be made.

    Returns:
        `Path`: `out`, resolved.
    """
    target = Path(out).expanduser().resolve()
    if target.is_dir():
        raise IsADirectoryError(f"{flag} {out}: is a directory; give a file name, e.g. {Path(out) / 'report.html'}.")
    for path in inputs:
        if Path(path).expanduser().resolve() == target:
            raise UserError(f"{flag} {out}: is an input of this command ({path}); choose another output file.")
    if target.exists():
        owner = run_file_owner(target)
        if owner is not None:
            raise UserError(
                f"{flag} {out}: is a file of the run in {owner} (writing there would destroy the run); choose an "
                f"output file that is not one of the run's, e.g. {owner / 'report.html'}."
            )
    if folder_must_exist and not target.parent.is_dir():
        raise FileNotFoundError(
            errno.ENOENT,
            f"{flag} {out}: the folder {target.parent} does not exist - create it (mkdir -p {target.parent}) or "
            "choose another output path",
        )
    check_writable_folder(target.parent, flag, out)
    return target


def refuse_outputs(
    given: str | Path, written: list[str | Path], inputs: list[str | Path], flag: str, folder_must_exist: bool = False
) -> list[Path]:
    """:func:`refuse_overwriting` for every file a command writes (`written`, e.g. `PREFIX.json` and `PREFIX.png`
    of `--out PREFIX`); `given`, the path as typed, is refused too when it names an existing run file."""
    given_path = Path(given).expanduser().resolve()
    if given_path.is_file() and (owner := run_file_owner(given_path)) is not None:
        raise UserError(
            f"{flag} {given}: is a file of the run in {owner} (the command writes next to it, under that name); "
            f"choose an output path that is not one of the run's files, e.g. {owner / 'eval'}."
        )
    return [refuse_overwriting(path, inputs, flag, folder_must_exist) for path in written]


def refuse_output_dir(out: str | Path, flag: str) -> Path:
    """`out`, resolved: a folder a command saves a model into (`config.json`, weights, tokenizer files), unless it is
    an existing file, a run directory (it holds one of :data:`RUN_MARKERS`: a training run, a checkpoint, a saved
    model) or a folder inside one's `checkpoint-N/` or `corpus_index/`: saving there would replace the run's files.
    Also checked before the work: the folder exists or can be made, and is writable."""
    target = Path(out).expanduser().resolve()
    if target.exists() and not target.is_dir():
        if (owner := run_file_owner(target)) is not None:
            raise UserError(
                f"{flag} {out}: is a file of the run in {owner}, not a folder; choose a new folder for the model."
            )
        raise UserError(f"{flag} {out}: is a file, not a folder; choose a new folder for the saved model.")
    owner = run_file_owner(target / "config.json")  # the files a saved model holds, as if written there
    if owner is not None:
        raise UserError(
            f"{flag} {out}: is the folder of the run or saved model in {owner}, or inside it (saving there would "
            "replace its weights and configs); choose a new folder."
        )
    check_writable_folder(target, flag, out)
    return target


def check_writable_folder(folder: Path, flag: str, out: str | Path) -> None:
    """The folder an output goes to: an existing writable directory, or one that can be made (its nearest existing
    ancestor is a writable directory)."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{flag} {out}: {existing} is not a directory; choose an output path in a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(
            errno.EACCES,
            f"{flag} {out}: the folder {existing} is not writable - choose an output path in a folder you can write "
            "to, or fix its permissions",
        )
