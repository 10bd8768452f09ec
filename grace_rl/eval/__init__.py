"""Evaluation of `encode()` embeddings: STS (`sts`), retrieval (`retrieval`), test-time scaling curves over the
rationale budget (`scaling`) and over the number of sampled rationales (`sample_scaling`), the mteb 2.x wrapper
(`mteb_model`), and the quality protocol every stated figure uses (`protocol`: dedup against training, matched
rationale budgets, bootstrap intervals; `devsets`, `protocol_cache`, `protocol_report`).

Kept import-light: import the submodule you need, e.g. `from grace_rl.eval.sts import evaluate_sts`.
"""
