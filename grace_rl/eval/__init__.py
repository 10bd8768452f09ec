"""Evaluation of `encode()` embeddings: STS (`sts`), retrieval (`retrieval`), test-time scaling curves over the
rationale budget (`scaling`), and the mteb 2.x wrapper (`mteb_model`).

Kept import-light: import the submodule you need, e.g. `from grace_rl.eval.sts import evaluate_sts`.
"""
