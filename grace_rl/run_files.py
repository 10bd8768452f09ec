"""What a run writes to its `output_dir`: the file names, the atomic write and the JSONL reader (both from
`rollout.files`, re-exported here).

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

from pathlib import Path

from rollout.files import JsonlError, atomic_write, iter_jsonl, read_jsonl

__all__ = ["JsonlError", "atomic_write", "iter_jsonl", "read_jsonl", "refuse_overwriting"]

RUN_FILE = "grace_run.json"
RATIONALE_LOG = "rationales.jsonl"
METRICS_LOG = "metrics.jsonl"
SUMMARY_FILE = "grace_summary.json"
CORPUS_INDEX_DIR = "corpus_index"
CHECKPOINT_MARKER = "grace_checkpoint.json"
FORMAT_VERSION = 1  # "format" of grace_run.json and of each checkpoint's grace_checkpoint.json
RUN_FILES = (RUN_FILE, RATIONALE_LOG, METRICS_LOG, SUMMARY_FILE)  # plus checkpoint-*/ and corpus_index/


def refuse_overwriting(out: str | Path, inputs: list[str | Path], flag: str = "-o") -> Path:
    """`out`, resolved, unless it is one of `inputs` (after resolving links) or a directory: writing there would
    destroy what is being read.

    Args:
        out (`str` or `Path`):
            The output file.
        inputs (`list[str | Path]`):
            The files the command reads.
        flag (`str`, *optional*, defaults to `"-o"`):
            The option that named `out` (for the message).

    Returns:
        `Path`: `out`, resolved.
    """
    target = Path(out).expanduser().resolve()
    if target.is_dir():
        raise IsADirectoryError(f"{flag} {out}: is a directory; give a file name, e.g. {Path(out) / 'report.html'}.")
    for path in inputs:
        if Path(path).expanduser().resolve() == target:
            raise ValueError(f"{flag} {out}: is an input of this command ({path}); choose another output file.")
    return target
