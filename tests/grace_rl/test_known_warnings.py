"""Only the listed third-party warnings are silenced: the same text from another category, and our own warnings,
still show."""

from __future__ import annotations

import warnings

from grace_rl.known_warnings import KNOWN_WARNINGS, silence_known_warnings


def test_only_the_known_messages_are_silenced():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_known_warnings()
        for category, prefix, _ in KNOWN_WARNINGS:
            warnings.warn(prefix + " (trailing text)", category, stacklevel=1)  # silenced
        warnings.warn(KNOWN_WARNINGS[0][1], UserWarning, stacklevel=1)  # same text, other category: shown
        warnings.warn(
            "`lora_r` is deprecated and will be removed in v6.", FutureWarning, stacklevel=1
        )  # not ours to hide
        warnings.warn(
            "grace-rl: anchor_rationale_tokens is larger than max_completion_length", UserWarning, stacklevel=1
        )
    shown = [(w.category, str(w.message)) for w in caught]
    assert shown == [
        (UserWarning, KNOWN_WARNINGS[0][1]),
        (FutureWarning, "`lora_r` is deprecated and will be removed in v6."),
        (UserWarning, "grace-rl: anchor_rationale_tokens is larger than max_completion_length"),
    ]
