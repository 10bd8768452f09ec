"""Evaluation of `encode()` embeddings: STS (`sts`; every STS figure comes from the one sweep and scorer in `sweep`,
with the statistics of `stats`), retrieval (`retrieval`), test-time scaling curves over the rationale budget
(`scaling`, `sample_scaling`) and over the number of sampled rationales (`sample_scaling`), the mteb 2.x wrapper
(`mteb_model`), and the quality protocol every stated figure uses (`protocol`: dedup against training, matched
rationale budgets, bootstrap intervals; `devsets`, `protocol_cache`, `protocol_report`).

Kept import-light: import the submodule you need, e.g. `from grace_rl.eval.sts import evaluate_sts`.
"""
