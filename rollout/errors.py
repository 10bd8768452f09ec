"""`UserError`: bad input from the user, raised by every layer (standard library only).

It lives in `rollout`, the lowest layer, so the corpus reader and the index settings can raise it without importing
`grace_rl`; `grace_rl.errors` re-exports it and gives it the entry points' one-line treatment (exit status 2).
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input from the user (a recipe value, a data row, a path, a command-line option): the message names the
    file / key / option and the fix. A `ValueError`, so `except ValueError` callers keep working."""
