"""grace-rl: GRACE (Generative Representation Learning via Contrastive Policy Optimization) on TRL.

Training wiring stays at the top level (as open-r1 keeps `src/open_r1` flat), in data-flow order:

- data: `data` (load + validate rows), `prompts` (the rationale chat template)
- config and checks: `config` (`GraceConfig`, every invariant in `__post_init__`), `preflight`
- rollout / update: `trainer` (`GraceTrainer` on TRL's `GRPOTrainer`), `corpus_setup` (index refresh), `resume`
- log: `rationale_log` (the log writers), `run_files` (output file names, atomic write, JSONL reader)
- entry points: `train` (`main(script_args, training_args, model_args)`), `cli` + `commands/` (`grace-rl ...`)
- models and inference: `models` (the default model, safe loading), `encoder` (`GraceEncoder`)

Subpackages: `eval/` (STS, retrieval, scaling curves, mteb wrapper) and `inspection/` (log reader, terminal
inspector, HTML report). The embedding side is the top-level `rollout` package, the reward the `reward` package.

Kept import-light (no torch) so that the CLI starts fast; import submodules for the API, e.g.
`from grace_rl.encoder import GraceEncoder`.
"""

from __future__ import annotations

__version__ = "0.1.0"

DEFAULT_MODEL_ID = "smollm2-135m-instruct"

__all__ = ["DEFAULT_MODEL_ID", "__version__"]
