"""Fail fast on a stale deepspeed op build lock: the ZeRO-3 runs would otherwise wait on it forever at 0% CPU."""

from __future__ import annotations

import pytest

from grace_rl.extension_locks import stale_extension_locks, stale_lock_message


@pytest.fixture(autouse=True, scope="session")
def no_stale_extension_locks():
    locks = stale_extension_locks()
    if locks:
        pytest.fail(stale_lock_message(locks), pytrace=False)
