"""grace-rl: GRACE (Generative Representation Learning via Contrastive Policy Optimization) on TRL."""

from __future__ import annotations

__version__ = "0.1.0"

from grace_rl.models import DEFAULT_MODEL_ID  # noqa: E402

__all__ = ["DEFAULT_MODEL_ID", "__version__"]
