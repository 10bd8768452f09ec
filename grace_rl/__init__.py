"""grace-rl: GRACE (Generative Representation Learning via Contrastive Policy Optimization) on TRL.

Training wiring stays at the top level (as open-r1 keeps `src/open_r1` flat), in data-flow order:

- data: `data` (load + validate rows), `prompts` (the rationale chat template)
- config and checks: `config` (`GraceConfig`: each field's rule on the field, the rest in `__post_init__`), `recipes`
  (a YAML recipe with its `base:` chain resolved), `preflight`, `input_checks` (numbers and sizes of a run),
  `checkpoint_check`
- rollout / update: `trainer` (`GraceTrainer` on TRL's `GRPOTrainer`), `embedding_loss` (optional InfoNCE on the
  rollouts' embeddings), `corpus_setup` (index refresh), `resume`, `main_process` (once-per-run work on rank 0)
- log: `rationale_log` (the log writers), `run_files` (output file names, atomic write, JSONL reader), `phases`
  (phase messages), `model_card` (portable run outputs), `known_warnings`
- entry points: `train` (`main(script_args, training_args, model_args)`), `cli` + `commands/` (`grace-rl ...`),
  `errors` (the entry points' error layer)
- models and inference: `models` (the default model, safe loading), `encoder` (`GraceEncoder`)

Subpackages: `eval/` (STS, retrieval, scaling curves, the quality protocol, mteb wrapper) and `inspection/` (log
reader, terminal inspector, HTML report). The embedding side is the top-level `rollout` package, the reward the
`reward` package.

Kept import-light (no torch) so that the CLI starts fast; import submodules for the API, e.g.
`from grace_rl.encoder import GraceEncoder`.
"""

from __future__ import annotations

__version__ = "0.1.0"

DEFAULT_MODEL_ID = "smollm2-135m-instruct"

__all__ = ["DEFAULT_MODEL_ID", "__version__"]
