"""Prompt templates: how an input text becomes the chat prompt the policy writes a rationale for."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_INSTRUCTION = (
    "Read the text and analyse it: its topic, the entities and actions it mentions, and what it means. "
    "Reason briefly inside <think></think>, then state your comprehensive understanding of the text in one "
    "sentence."
)

# The shipped recipes' instruction (configs/grace_smollm2_cpu.yaml, configs/grace_unsup_smollm2_cpu.yaml): a rationale
# that restates the text in other words is an "echo" of it (its states attend to the whole text), where the default
# instruction's free analysis drifts into invented detail. Measured in docs/recipes.md ("The paraphrasing
# instruction"); the evaluation protocol also scores the base model under it (matched prompts).
PARAPHRASE_INSTRUCTION = (
    "Paraphrase the text in your own words, then paraphrase it again in different words, repeating its meaning "
    "several times."
)


@dataclass(frozen=True)
class RationaleTemplate:
    """Builds the chat messages for one input text: the instruction as the system turn, the text as the user turn.

    The text is the user turn's whole content, so the embedder can find its tokens exactly and pool them with the
    rationale while leaving the instruction and template tokens out. Picklable (sent to Ray actors).

    Example:
        >>> RationaleTemplate("Explain.")("A cat sat.")
        [{'role': 'system', 'content': 'Explain.'}, {'role': 'user', 'content': 'A cat sat.'}]
    """

    instruction: str = DEFAULT_INSTRUCTION

    def __call__(self, text: str) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.instruction}, {"role": "user", "content": text}]
