"""`grace-rl eval retrieval-protocol`: BM25, frozen encoders, base and trained models on the SciFact retrieval dev
split, nDCG@10 and recall@100 with bootstrap intervals over queries (see :mod:`grace_rl.eval.retrieval_protocol`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from grace_rl import DEFAULT_MODEL_ID
from grace_rl.commands import HelpFormatter, examples
from grace_rl.commands.eval_protocol import _budgets
from grace_rl.errors import UserError


def _versus(spec: str) -> tuple[str, str]:
    a, sep, b = spec.partition(",")
    if not sep or not a.strip() or not b.strip():
        raise argparse.ArgumentTypeError(f"--versus takes 'ROW_A,ROW_B' (each LABEL or LABEL@BUDGET), got {spec!r}.")
    return a.strip(), b.strip()


def cmd_eval_retrieval_protocol(args: argparse.Namespace) -> int:
    from grace_rl.eval.retrieval_models import RetrievalSettings, format_table, run_retrieval_protocol
    from grace_rl.eval.retrieval_protocol import load_devset
    from grace_rl.models import cache_root
    from grace_rl.run_files import refuse_overwriting

    if args.bootstrap < 1:
        raise UserError(f"--bootstrap must be >= 1, got {args.bootstrap}.")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {args.batch_size}.")
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be >= 1 query, got {args.limit}.")
    if args.doc_max_tokens < 1:
        raise UserError(f"--doc-max-tokens must be >= 1, got {args.doc_max_tokens}.")
    out = Path(args.out)
    if out.exists() and out.is_dir():
        raise UserError(f"--out {out} is a directory; give a file path (e.g. runs/retrieval.json).")
    refuse_overwriting(out, [], "--out")  # not onto a run's file, into a writable folder; before any model loads
    devset = load_devset(args.data_dir, args.limit)
    settings = RetrievalSettings(
        budgets=tuple(sorted(set(args.budgets))),
        doc_max_tokens=args.doc_max_tokens,
        n_boot=args.bootstrap,
        seed=args.seed,
        batch_size=args.batch_size,
        cache_dir=None if args.no_cache else (args.cache_dir or cache_root() / "retrieval"),
        extra_instructions=tuple(args.instruction),
        versus=tuple(args.versus),
    )
    result = run_retrieval_protocol(devset, args.base, args.trained, args.encoder, settings, bm25=not args.no_bm25)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    print(format_table(result))
    print(f"wrote {out}")
    return 0


def add_parser(tasks: argparse._SubParsersAction) -> None:
    """Add `retrieval-protocol` to the `grace-rl eval` tasks."""
    p = tasks.add_parser(
        "retrieval-protocol",
        help="Retrieval under the protocol: SciFact dev split, nDCG@10 / recall@100 with 95%% bootstrap intervals.",
        formatter_class=HelpFormatter,
        epilog=examples(
            "grace-rl eval retrieval-protocol --encoder all-minilm-l6-v2            # BM25, MiniLM, base rows",
            "grace-rl eval retrieval-protocol --trained runs/scifact_s0 runs/scifact_s1 --encoder all-minilm-l6-v2",
            "grace-rl eval retrieval-protocol --trained RUN_A RUN_B --versus RUN_A,RUN_B --out runs/retrieval.json",
        ),
    )
    p.add_argument(
        "--trained", nargs="+", default=[], metavar="RUN_DIR", help="GRACE runs (frozen-embedder runs too)."
    )
    p.add_argument("--base", default=DEFAULT_MODEL_ID, help="Base policy: the default id or a local HF dir.")
    p.add_argument(
        "--encoder",
        nargs="+",
        default=[],
        metavar="NAME_OR_DIR",
        help="Frozen sentence-transformers encoders: alone, and fed the base policy's rationales.",
    )
    p.add_argument("--data-dir", default="data/scifact", help="corpus.jsonl, dev_queries.jsonl, dev_qrels.tsv.")
    p.add_argument(
        "--budgets", type=_budgets, default=[0, 16, 32], metavar="T1,T2,...", help="Query rationale budgets."
    )
    p.add_argument(
        "--doc-max-tokens", type=int, default=128, help="Document tokens the policy rows embed (plain text, budget 0)."
    )
    p.add_argument(
        "--instruction", nargs="+", default=[], help="Extra instructions the base policy is also evaluated under."
    )
    p.add_argument(
        "--versus",
        type=_versus,
        action="append",
        default=[],
        metavar="ROW_A,ROW_B",
        help="A paired comparison to report (LABEL or LABEL@BUDGET each); repeatable.",
    )
    p.add_argument("--limit", type=int, default=None, metavar="N", help="Only the first N dev queries.")
    p.add_argument("--bootstrap", type=int, default=1000, help="Bootstrap resamples.")
    p.add_argument("--seed", type=int, default=0, help="Bootstrap seed.")
    p.add_argument("--batch-size", type=int, default=16, help="Texts per batch.")
    p.add_argument("--no-bm25", action="store_true", help="Leave out the BM25 row.")
    p.add_argument("--cache-dir", type=Path, default=None, help="Row cache (default: the model cache's retrieval/).")
    p.add_argument("--no-cache", action="store_true", help="Recompute every row.")
    p.add_argument("--out", default="runs/retrieval_protocol.json", help="JSON with every row and comparison.")
    p.set_defaults(func=cmd_eval_retrieval_protocol)
