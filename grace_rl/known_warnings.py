"""Known third-party warnings that a grace-rl run triggers but a user cannot act on, silenced one message at a time.

Only these exact messages are filtered (by category and message prefix), so every other warning, ours included,
still shows. Each entry says why it is safe to hide.
"""

from __future__ import annotations

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


def silence_known_warnings() -> None:
    """Ignore the :data:`KNOWN_WARNINGS` (process-wide; call it once at the start of a run)."""
    for category, prefix, _ in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(prefix), category=category)
