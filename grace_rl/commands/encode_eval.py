"""``grace-rl encode`` and ``grace-rl eval sts``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from grace_rl.evaluation import STS_FORMATS, evaluate_sts
from grace_rl.models import DEFAULT_MODEL_ID


def _encoder(args: argparse.Namespace):
    from grace_rl.encoder import GraceEncoder

    return GraceEncoder.from_pretrained(args.model, trust_remote_code=args.trust_remote_code)


def _add_encode_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL_ID, help="Default id, a local HF dir, or a GRACE output dir.")
    p.add_argument("--max-rationale-tokens", type=int, default=None, help="Rationale budget (0 = no rationale).")
    p.add_argument(
        "--num-rationales", type=int, default=1, help="Rationales per text, averaged (needs --temperature)."
    )
    p.add_argument("--temperature", type=float, default=0.0, help="Rationale sampling temperature (0 = greedy).")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--trust-remote-code", action="store_true", help="Allow custom model code (off by default).")


def cmd_encode(args: argparse.Namespace) -> int:
    texts = [line for line in Path(args.input).read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        raise ValueError(f"{args.input} has no non-empty lines to encode.")
    emb = _encoder(args).encode(
        texts,
        batch_size=args.batch_size,
        max_rationale_tokens=args.max_rationale_tokens,
        num_rationales=args.num_rationales,
        temperature=args.temperature,
    )
    np.save(args.output, emb)
    print(json.dumps({"texts": len(texts), "dim": int(emb.shape[1]), "output": str(args.output)}))
    return 0


def cmd_eval_sts(args: argparse.Namespace) -> int:
    result = evaluate_sts(
        _encoder(args),
        args.data,
        args.format,
        args.limit,
        batch_size=args.batch_size,
        max_rationale_tokens=args.max_rationale_tokens,
        num_rationales=args.num_rationales,
        temperature=args.temperature,
    )
    result["model"] = args.model
    result["max_rationale_tokens"] = args.max_rationale_tokens
    print(json.dumps(result))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    enc = sub.add_parser("encode", help="Embed the lines of a text file into a .npy array.")
    enc.add_argument("--input", required=True, help="Text file, one text per line.")
    enc.add_argument("--output", required=True, help="Output .npy path.")
    _add_encode_options(enc)
    enc.set_defaults(func=cmd_encode)

    ev = sub.add_parser("eval", help="Evaluate embeddings.")
    tasks = ev.add_subparsers(dest="task", required=True)
    sts = tasks.add_parser("sts", help="Spearman (x100) of cosine vs gold scores.")
    sts.add_argument("--data", required=True, help="STS file.")
    sts.add_argument("--format", choices=STS_FORMATS, default="stsb")
    sts.add_argument("--limit", type=int, default=None, help="Evaluate the first N pairs.")
    _add_encode_options(sts)
    sts.set_defaults(func=cmd_eval_sts)
