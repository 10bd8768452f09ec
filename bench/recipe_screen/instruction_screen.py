"""Screen rationale instructions: one model (the base by default) under each instruction, greedy rationales at each
budget, Spearman x100 with a 95% bootstrap interval on N evenly spaced pairs of a deduplicated dev set.

How the paraphrasing instruction of the shipped recipes was found (docs/recipes.md, "The paraphrasing instruction").
A screen, not a protocol figure: the protocol (`grace-rl eval protocol`) scores a trained run's base under its
instruction by itself (the `base+prompt` rows).

    python bench/recipe_screen/instruction_screen.py --n 300 --budgets 0,16,32,64 \
        --instruction default --instruction paraphrase --instruction "Summarise the meaning of the text."
"""

from __future__ import annotations

import argparse
import time

from grace_rl.encoder import GraceEncoder
from grace_rl.eval.devsets import load_dev_sets
from grace_rl.eval.sweep import sweep_sts
from grace_rl.prompts import DEFAULT_INSTRUCTION, PARAPHRASE_INSTRUCTION

NAMED = {"default": DEFAULT_INSTRUCTION, "paraphrase": PARAPHRASE_INSTRUCTION}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="Default id, local HF dir or GRACE run.")
    parser.add_argument("--dataset", default="stsb-dev", help="stsb-dev or sick-trial.")
    parser.add_argument("--n", type=int, default=300, help="Evenly spaced held-out pairs.")
    parser.add_argument("--budgets", default="0,16,32,64")
    parser.add_argument(
        "--instruction", action="append", default=None, help="Repeatable: 'default', 'paraphrase' or any text."
    )
    parser.add_argument("--show", type=int, default=2, help="Print the rationales of the first N texts.")
    args = parser.parse_args()

    budgets = [int(b) for b in args.budgets.split(",")]
    (dev,) = load_dev_sets([args.dataset], limit=args.n)
    for name in args.instruction or ["default", "paraphrase"]:
        text = NAMED.get(name, name)
        encoder = GraceEncoder.from_pretrained(args.model, instruction=text)
        start = time.perf_counter()
        points = sweep_sts(encoder, dev.pairs, budgets, intervals=True, batch_size=32, show_progress_bar=False)
        cells = []
        for p in points:
            ci, tokens = p.interval, p.mean_rationale_tokens
            cells.append(f"@{p.budget}: {ci.point:.2f} [{ci.low:.2f}, {ci.high:.2f}] {tokens:.1f}t")
        seconds = time.perf_counter() - start
        print(f"[{name[:60]}] {dev.name} n={len(dev.pairs)}  " + "  ".join(cells), f"({seconds:.0f} s)")
        if args.show and max(budgets) > 0:
            texts = [p.a for p in dev.pairs[: args.show]]
            for text_in, ids in zip(texts, encoder.embedder.generate_rationales(texts, max(budgets)), strict=True):
                print("   ", text_in[:80], "->", repr(encoder.embedder.tokenizer.decode(list(ids)))[:300])


if __name__ == "__main__":
    main()
