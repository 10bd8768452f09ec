"""grace-rl: GRACE (Generative Representation Learning via Contrastive Policy Optimization) on TRL.

Kept import-light (no torch) so that the CLI starts fast; import submodules for the API, e.g.
``from grace_rl.encoder import GraceEncoder``.
"""

from __future__ import annotations

__version__ = "0.1.0"

DEFAULT_MODEL_ID = "smollm2-135m-instruct"

__all__ = ["DEFAULT_MODEL_ID", "__version__"]
