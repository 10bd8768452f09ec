"""Known third-party warnings that a grace-rl run triggers but a user cannot act on, silenced one message at a time.

Only these exact messages are filtered (by category and message prefix), so every other warning, ours included,
still shows. Each entry says why it is safe to hide. Warnings our own calls cause are fixed where we make the call
instead (e.g. transformers' `past_key_values` deprecations: `rollout.capture.cache_keyword` names the KV cache as the
installed release does).
"""

from __future__ import annotations

import logging
import re
import warnings

# (category, message prefix, why it can be ignored)
KNOWN_WARNINGS: list[tuple[type[Warning], str, str]] = [
    (
        FutureWarning,
        "`gradient_checkpointing` is deprecated and will be removed in v6. Use `activation_checkpointing` instead.",
        "TRL's GRPOConfig defaults gradient_checkpointing to True, so transformers warns on every run even when the "
        "recipe never names the key; the value is still honoured (mirrored into activation_checkpointing).",
    ),
    (
        FutureWarning,
        "`is_gradient_checkpointing` is deprecated and will be removed in v6.",
        "read by TRL's own generation code (trl.models.utils), not by grace-rl.",
    ),
]


# (logger name, message prefix, why it can be ignored): third-party log records rather than `warnings`
KNOWN_LOG_RECORDS: list[tuple[str, str, str]] = [
    (
        "DeepSpeed",
        "Setting accelerator to CPU. If you have GPU or other accelerator, we were unable to detect it.",
        "logged (twice per run) by deepspeed's accelerator auto-detection on every machine without CUDA, including "
        "the CPU recipes that ask for the CPU (`use_cpu: true`); the choice itself is unchanged.",
    ),
]


class _DropKnownRecords(logging.Filter):
    def __init__(self, prefixes: list[str]) -> None:
        super().__init__()
        self.prefixes = tuple(prefixes)

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefixes)


def silence_known_warnings() -> None:
    """Ignore the :data:`KNOWN_WARNINGS` and drop the :data:`KNOWN_LOG_RECORDS` (process-wide; call it once at the
    start of a run, before the third-party modules log: a logger's filter holds for every later record)."""
    for category, prefix, _ in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(prefix), category=category)
    by_logger: dict[str, list[str]] = {}
    for name, prefix, _ in KNOWN_LOG_RECORDS:
        by_logger.setdefault(name, []).append(prefix)
    for name, prefixes in by_logger.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropKnownRecords) for f in logger.filters):  # idempotent
            logger.addFilter(_DropKnownRecords(prefixes))
