"""`grace-rl encode`, `grace-rl eval sts` and `grace-rl eval retrieval` (each eval with `--scaling`)."""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grace_rl import DEFAULT_MODEL_ID
from grace_rl.commands import HelpFormatter, examples
from grace_rl.errors import UserError

STS_FORMATS = (
    "stsb",
    "sick",
    "jsonl",
)  # grace_rl.eval.sts.STS_FORMATS (checked there); not imported: --help stays fast


def _encoder(args: argparse.Namespace):
    from grace_rl.encoder import GraceEncoder, check_encode_options

    temperature = 0.0 if args.temperature is None else args.temperature  # None: the command picks its default
    check_encode_options(args.max_rationale_tokens, args.num_rationales, temperature, args.batch_size)  # fail fast

    embedding = "echo" if getattr(args, "echo", False) else None  # `encode --echo`; else the model's own
    instruction = getattr(args, "instruction", None)
    if instruction is not None and not instruction.strip():
        raise UserError("--instruction: empty; give the rationale instruction, or leave the option out.")
    return GraceEncoder.from_pretrained(
        args.model, trust_remote_code=args.trust_remote_code, instruction=instruction, embedding=embedding
    )


def _add_encode_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL_ID,
        help="The embedded default model id, a local Hugging Face model directory, or a GRACE run directory "
        "(its adapter or weights; the base model is resolved again on this machine).",
    )
    p.add_argument(
        "--instruction",
        default=None,
        metavar="TEXT",
        help="The rationale instruction (system prompt) the model writes under, e.g. a trained run's, to evaluate a "
        "base model under it. Omitted: the one a GRACE run trained with (its grace_config.json), else the default.",
    )
    p.add_argument(
        "--max-rationale-tokens",
        type=int,
        default=None,
        metavar="N",
        help="Rationale budget in tokens; 0 pools the text alone (no rationale). Omitted: the budget the model was "
        "trained with (max_rationale_tokens in a GRACE run's grace_config.json), else 32.",
    )
    p.add_argument(
        "--num-rationales",
        type=int,
        default=1,
        metavar="K",
        help="Rationales per text; their embeddings are averaged (K > 1 needs --temperature > 0).",
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="Rationale sampling temperature (0 = greedy; default 0, or 0.7 with --scaling-samples).",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=32,
        metavar="B",
        help="Texts per generate call / forward batch (32: fastest on CPU, bench/encode_speed.py; less: memory).",
    )
    p.add_argument(
        "--trust-remote-code", action="store_true", help="Allow a model's own Python code (off unless given)."
    )


def _check_options(args: argparse.Namespace, temperature: float = 0.0) -> None:
    """The encode options (`--batch-size`, budgets, temperature), before any file is read or model loaded."""
    from grace_rl.encoder import check_encode_options

    check_encode_options(args.max_rationale_tokens, args.num_rationales, temperature, args.batch_size)


def input_texts(source: str, where: str) -> list[str]:
    """One text per line of `source`: blank lines at the end are dropped (they shift no row); an empty (or blank)
    line before the last text is refused with its number, since row i of the output must be line i of the input."""
    lines = source.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()  # the newline that ends the last line, and blank lines after it
    texts = [line.rstrip("\r") for line in lines]
    for n, text in enumerate(texts, start=1):
        if not text.strip():
            raise UserError(
                f"{where}:{n}: line {n} is empty; row i of the output is line i of the input, so every line must "
                "hold a text - remove the empty line (or write a text on it)."
            )
    if not texts:
        raise UserError(f"{where} has no lines to encode; give one text per line.")
    return texts


def cmd_encode(args: argparse.Namespace) -> int:
    import io

    import numpy as np

    from grace_rl.data import read_text_lines
    from grace_rl.run_files import atomic_write, check_regular_file, refuse_outputs

    _check_options(args, args.temperature or 0.0)
    output = args.output if str(args.output).endswith(".npy") else f"{args.output}.npy"  # np.save's naming
    inputs = [] if args.input == "-" else [args.input]
    (output,) = refuse_outputs(args.output, [output], inputs, "--output", folder_must_exist=True)
    if args.input != "-":
        check_regular_file(args.input, "--input")
    source = sys.stdin.read() if args.input == "-" else read_text_lines(Path(args.input))
    where = "standard input" if args.input == "-" else args.input
    texts = input_texts(source, where)
    emb = _encoder(args).encode(
        texts,
        batch_size=args.batch_size,
        max_rationale_tokens=args.max_rationale_tokens,
        num_rationales=args.num_rationales,
        temperature=args.temperature or 0.0,
    )
    buffer = io.BytesIO()
    np.save(buffer, emb)
    atomic_write(output, buffer.getvalue())  # a reader never sees half an array
    rows = f"row i is line i of {where} (1-based lines, none skipped)"
    print(json.dumps({"texts": len(texts), "dim": int(emb.shape[1]), "output": str(output), "rows": rows}))
    return 0


def _check_curve_outputs(args: argparse.Namespace, prefix: str, inputs: list[str]) -> None:
    """`--scaling-out PREFIX`: PREFIX.json and PREFIX.png may not land on an input or a run's file (checked first)."""
    from grace_rl.run_files import refuse_outputs

    refuse_outputs(prefix, [f"{prefix}.json", f"{prefix}.png"], inputs, "--scaling-out")


def _budgets(spec: str) -> list[int]:
    from grace_rl.eval.scaling import parse_budgets

    try:
        return parse_budgets(spec)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def _add_scaling_options(p: argparse.ArgumentParser, task: str) -> None:
    p.add_argument(
        "--scaling",
        type=_budgets,
        default=None,
        metavar="T1,T2,...",
        help="Evaluate at each rationale budget (e.g. 0,8,16,32,64) and write the curve as JSON + PNG.",
    )
    p.add_argument(
        "--scaling-out",
        default=f"{task}_scaling",
        metavar="PREFIX",
        help="With --scaling: writes PREFIX.json and PREFIX.png.",
    )


def _counts(spec: str) -> list[int]:
    from grace_rl.eval.sample_scaling import parse_counts

    try:
        return parse_counts(spec)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def _add_sts_scaling_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--scaling-samples",
        type=_counts,
        default=None,
        metavar="K1,K2,...",
        help="Evaluate with each number of sampled rationales averaged (e.g. 1,2,4,8; at --temperature, default 0.7;"
        " budget --max-rationale-tokens) and write the curve with 95%% bootstrap intervals as JSON + PNG.",
    )
    p.add_argument(
        "--compare",
        default=None,
        metavar="MODEL",
        help="With --scaling or --scaling-samples: also sweep MODEL (e.g. a trained run) and plot both curves.",
    )


def _run_sts_curves(args: argparse.Namespace) -> int:
    """`--scaling` / `--scaling-samples` for STS: one curve per model (`--model`, then `--compare`), with 95%
    bootstrap intervals, in one JSON + PNG; prints one JSON line naming the files."""
    from grace_rl.eval.sample_scaling import (
        DEFAULT_SAMPLE_TEMPERATURE,
        sts_budget_curve,
        sts_samples_curve,
        write_curves,
    )

    models = [args.model] + ([args.compare] if args.compare else [])
    samples = args.scaling_samples is not None
    temperature = (
        args.temperature if args.temperature is not None else (DEFAULT_SAMPLE_TEMPERATURE if samples else 0.0)
    )
    start, curves = time.perf_counter(), []
    for model in models:
        encoder = _encoder(argparse.Namespace(**{**vars(args), "model": model}))
        if samples:
            points = sts_samples_curve(
                encoder,
                args.data,
                args.scaling_samples,
                temperature,
                args.format,
                args.limit,
                args.max_rationale_tokens,
                args.batch_size,
            )
        else:
            kwargs = {"batch_size": args.batch_size, "num_rationales": args.num_rationales, "temperature": temperature}
            points = sts_budget_curve(encoder, args.data, args.scaling, args.format, args.limit, **kwargs)
        curves.append({"model": model, "points": points})
    meta = {
        "models": models,
        "temperature": temperature,
        "seconds": round(time.perf_counter() - start, 1),
        **(
            {"max_rationale_tokens": args.max_rationale_tokens} if samples else {"num_rationales": args.num_rationales}
        ),
    }
    x_key, xlabel = (
        ("num_rationales", f"rationales averaged (temperature {temperature})")
        if samples
        else ("max_rationale_tokens", "rationale budget (max tokens)")
    )
    default_out = "sts_samples_scaling" if samples else "sts_scaling"
    out = args.scaling_out if args.scaling_out != "sts_scaling" or not samples else default_out
    files = write_curves(curves, x_key, xlabel, out, meta)
    print(json.dumps({"task": "sts", **meta, "points": curves[0]["points"], "curves": curves, **files}))
    return 0


def _run_eval(args: argparse.Namespace, task: str, evaluate: Callable[..., dict[str, Any]]) -> int:
    """One evaluation (one JSON line), or with `--scaling` the curve (one JSON line naming the written files)."""
    from grace_rl.eval.scaling import scaling_curve, write_scaling

    encoder = _encoder(args)
    temperature = args.temperature or 0.0
    kwargs = {"batch_size": args.batch_size, "num_rationales": args.num_rationales, "temperature": temperature}
    if args.scaling is None:
        result = evaluate(encoder, max_rationale_tokens=args.max_rationale_tokens, **kwargs)
        result.update(model=args.model, max_rationale_tokens=args.max_rationale_tokens)
        print(json.dumps(result))
        return 0
    start = time.perf_counter()
    points = scaling_curve(encoder, args.scaling, evaluate, **kwargs)
    meta = {
        "model": args.model,
        "num_rationales": args.num_rationales,
        "temperature": temperature,
        "seconds": round(time.perf_counter() - start, 1),
    }
    files = write_scaling(points, task, args.scaling_out, meta)
    print(json.dumps({"task": task, **meta, "points": points, **files}))
    return 0


def cmd_eval_sts(args: argparse.Namespace) -> int:
    from grace_rl.eval.sts import evaluate_sts, read_sts

    if args.scaling_samples is not None and args.scaling is not None:
        raise UserError("Give --scaling (rationale budgets) or --scaling-samples (rationale counts), not both.")
    from grace_rl.eval.sample_scaling import DEFAULT_SAMPLE_TEMPERATURE

    default = DEFAULT_SAMPLE_TEMPERATURE if args.scaling_samples is not None else 0.0
    _check_options(args, default if args.temperature is None else args.temperature)  # before the data and model
    if args.scaling_samples is not None or args.scaling is not None:
        samples = args.scaling_samples is not None
        out = args.scaling_out if args.scaling_out != "sts_scaling" or not samples else "sts_samples_scaling"
        _check_curve_outputs(args, out, [args.data])
    read_sts(args.data, args.format, args.limit)  # a bad file fails before the model is loaded
    if args.scaling_samples is not None or args.scaling is not None:
        return _run_sts_curves(args)
    if args.compare:
        raise UserError("--compare MODEL needs --scaling or --scaling-samples (it adds a second curve).")
    return _run_eval(args, "sts", functools.partial(evaluate_sts, path=args.data, fmt=args.format, limit=args.limit))


def cmd_eval_retrieval(args: argparse.Namespace) -> int:
    from grace_rl.eval.retrieval import evaluate_retrieval

    _check_options(args, args.temperature or 0.0)
    if args.scaling is not None:
        _check_curve_outputs(args, args.scaling_out, [args.corpus, args.queries, args.qrels])
    evaluate = functools.partial(
        evaluate_retrieval,
        corpus_path=args.corpus,
        queries_path=args.queries,
        qrels_path=args.qrels,
        limit_queries=args.limit_queries,
    )
    return _run_eval(args, "retrieval", evaluate)


def add_parser(sub: argparse._SubParsersAction) -> None:
    enc = sub.add_parser(
        "encode",
        help="Embed the lines of a text file into a .npy array.",
        description="Embed each line (row i of the output is line i; an empty line is an error): write a rationale "
        "(greedy by default), then pool text + rationale. Prints one JSON line (texts, dim, output, rows).",
        formatter_class=HelpFormatter,
        epilog=examples(
            "grace-rl encode --input texts.txt --output emb.npy",
            "grace-rl encode --model runs/grace_smollm2_cpu --input texts.txt --output emb.npy",
            "echo 'A man plays a guitar' | grace-rl encode --model runs/grace_smollm2_cpu --input - --output emb.npy",
            "grace-rl encode --input texts.txt --output emb.npy --echo   # the text repeated, no generation",
        ),
    )
    enc.add_argument("--input", required=True, help="Text file, one text per line ('-' reads standard input).")
    enc.add_argument(
        "--output",
        required=True,
        help="Output .npy path: a float32 (lines, hidden size) array; row i is line i of --input (an empty line is "
        "an error). Its folder must exist.",
    )
    enc.add_argument(
        "--echo",
        action="store_true",
        help="Echo embeddings: the text repeated in the rationale slot instead of a generated rationale (no "
        "generation; --max-rationale-tokens and --temperature do not apply; docs/ablations.md).",
    )
    _add_encode_options(enc)
    enc.set_defaults(func=cmd_encode)

    ev = sub.add_parser(
        "eval",
        help="Evaluate embeddings (sts, retrieval).",
        description="Evaluate embeddings; `grace-rl eval TASK --help` lists a task's options.",
        formatter_class=HelpFormatter,
        epilog=examples("grace-rl eval sts --help", "grace-rl eval retrieval --help"),
    )
    tasks = ev.add_subparsers(dest="task", required=True, metavar="TASK")
    _add_sts_parser(tasks)
    _add_retrieval_parser(tasks)


def _add_sts_parser(tasks: argparse._SubParsersAction) -> None:
    sts = tasks.add_parser(
        "sts",
        help="Spearman (x100) of cosine vs gold scores.",
        description="Spearman correlation (x100) between the cosine of each pair's embeddings and the gold score. "
        "Prints one JSON line (or, with --scaling, one line naming the curve files).",
        formatter_class=HelpFormatter,
        epilog=examples(
            "grace-rl eval sts --data data/stsb_dev_sample.tsv --model runs/grace_smollm2_cpu --limit 100",
            "grace-rl eval sts --data data/stsb_dev_sample.tsv --max-rationale-tokens 0   # the text alone",
            "grace-rl eval sts --data pairs.jsonl --format jsonl --scaling 0,8,16,32",
        ),
    )
    sts.add_argument("--data", required=True, help="STS file in --format.")
    sts.add_argument(
        "--format",
        choices=STS_FORMATS,
        default="stsb",
        help="stsb: STS-B TSV (score in column 5, sentences in 6-7); sick: SICK TSV with a header "
        "(relatedness_score); jsonl: {sentence1, sentence2, score} lines.",
    )
    sts.add_argument(
        "--limit", type=int, default=None, metavar="N", help="Evaluate the first N pairs (all if omitted)."
    )
    _add_encode_options(sts)
    _add_scaling_options(sts, "sts")
    _add_sts_scaling_options(sts)
    sts.set_defaults(func=cmd_eval_sts)


def _add_retrieval_parser(tasks: argparse._SubParsersAction) -> None:
    ret = tasks.add_parser(
        "retrieval",
        help="nDCG@10, MRR@10, recall@100 (x100) of a FAISS inner-product search over the corpus.",
        description="Embed corpus and queries, search the corpus by inner product (FAISS) and score the ranking "
        "against the qrels: nDCG@10, MRR@10, recall@100 (x100). Prints one JSON line.",
        formatter_class=HelpFormatter,
        epilog=examples(
            "grace-rl eval retrieval --corpus corpus.jsonl --queries queries.jsonl --qrels qrels/test.tsv",
            "grace-rl eval retrieval --corpus c.tsv --queries q.tsv --qrels qrels.tsv --limit-queries 50 "
            "--max-rationale-tokens 0",
        ),
    )
    ret.add_argument("--corpus", required=True, help="JSONL {_id, text, title?} or TSV id<TAB>text.")
    ret.add_argument("--queries", required=True, help="JSONL {_id, text} or TSV id<TAB>text.")
    ret.add_argument("--qrels", required=True, help="TSV query-id corpus-id score (BEIR), TREC qrels, or JSONL.")
    ret.add_argument(
        "--limit-queries",
        type=int,
        default=None,
        metavar="N",
        help="Evaluate the first N judged queries (all if omitted).",
    )
    _add_encode_options(ret)
    _add_scaling_options(ret, "retrieval")
    ret.set_defaults(func=cmd_eval_retrieval)

    from grace_rl.commands import eval_protocol  # `grace-rl eval protocol`; light: heavy imports run in the command

    eval_protocol.add_parser(tasks)
    from grace_rl.commands import eval_retrieval_protocol

    eval_retrieval_protocol.add_parser(tasks)
