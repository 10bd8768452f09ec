"""Stale build locks of torch C++ extensions (deepspeed's JIT-compiled ops).

deepspeed compiles some ops on first use (on the CPU: its shared-memory comm op, for minutes) through
`torch.utils.cpp_extension.load`, which holds a `lock` file in the op's build directory while it compiles. A run
killed during the compile leaves that file behind, and every later run that needs the op waits on it forever, at 0%
CPU, with no message. :func:`stale_extension_locks` finds such files; :func:`warn_stale_extension_locks` (called by
the preflight when a run uses deepspeed) says which file to delete.

A lock younger than `older_than_s` may belong to a compile in progress (another run on the machine), so only older
ones are reported.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

logger = logging.getLogger(__name__)

LOCK_NAME = "lock"  # torch.utils.file_baton.FileBaton's file in each extension's build directory
STALE_AFTER_S = 30 * 60  # deepspeed's CPU comm op compiles in minutes on 2 cores


def extensions_root() -> Path:
    """The directory torch builds extensions in: `$TORCH_EXTENSIONS_DIR`, else
    `<user cache>/torch_extensions/py<ver>_<accelerator>` (as `torch.utils.cpp_extension._get_build_directory`)."""
    env = os.environ.get("TORCH_EXTENSIONS_DIR")
    if env:
        return Path(env)
    import torch
    from torch.utils.cpp_extension import get_default_build_root

    if torch.version.hip is not None:
        accel = "rocm" + torch.version.hip.replace(".", "")
    elif torch.version.cuda is not None:
        accel = "cu" + torch.version.cuda.replace(".", "")
    else:
        accel = "cpu"
    return Path(get_default_build_root()) / f"py{sys.version_info.major}{sys.version_info.minor}_{accel}"


def stale_extension_locks(
    root: str | Path | None = None, older_than_s: float = STALE_AFTER_S, now: float | None = None
) -> list[Path]:
    """Build locks under `root` (default :func:`extensions_root`) last modified more than `older_than_s` ago, sorted.

    Args:
        root (`str` or `Path`, *optional*):
            the extensions root (one sub-directory per extension).
        older_than_s (`float`, *optional*, defaults to 30 minutes):
            a lock at least this old is reported (> 0).
        now (`float`, *optional*):
            the current time (`time.time()`), for tests.
    """
    if older_than_s <= 0:
        raise ValueError(f"older_than_s must be > 0, got {older_than_s}.")
    root = extensions_root() if root is None else Path(root)
    if not root.is_dir():
        return []
    now = time.time() if now is None else now
    stale = []
    for lock in root.glob(f"*/{LOCK_NAME}"):
        try:
            age = now - lock.stat().st_mtime
        except FileNotFoundError:  # released while we looked
            continue
        if age >= older_than_s:
            stale.append(lock)
    return sorted(stale)


def stale_lock_message(locks: list[Path]) -> str:
    """One message naming every stale lock and the fix."""
    names = ", ".join(str(p) for p in locks)
    return (
        f"Stale torch extension build lock(s): {names}. A run killed while deepspeed compiled an op left them; any "
        f"run that needs the op waits on them forever. If no compile is running on this machine, delete the "
        f"directory holding each lock (it is rebuilt on the next run)."
    )


def warn_stale_extension_locks(root: str | Path | None = None, older_than_s: float = STALE_AFTER_S) -> list[Path]:
    """Log a warning naming the stale locks (see :func:`stale_extension_locks`) and return them."""
    locks = stale_extension_locks(root, older_than_s)
    if locks:
        logger.warning(stale_lock_message(locks))
    return locks
