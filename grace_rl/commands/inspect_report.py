"""`grace-rl inspect RUN_DIR` (rich, in the terminal) and `grace-rl report RUN_DIR -o report.html`."""

from __future__ import annotations

import argparse

from grace_rl.inspection.inspector import Selection, inspect_run
from grace_rl.inspection.log import load_run


def cmd_inspect(args: argparse.Namespace) -> int:
    fields = ("step", "prompt_id", "grep", "top", "bottom", "by", "limit", "columns")
    inspect_run(args.run_dir, Selection(**{name: getattr(args, name) for name in fields}))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from grace_rl.inspection.report import write_report  # matplotlib only when a report is made

    run = load_run(args.run_dir)
    out, note = write_report(run, args.output, max_rows=args.max_rows, page_size=args.page_size, seed=args.seed)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB); the table holds {note}")
    return 0


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return number


def add_parser(sub: argparse._SubParsersAction) -> None:
    ins = sub.add_parser("inspect", help="Browse a run's rationale log in the terminal.")
    ins.add_argument("run_dir", help="Training output_dir (holds rationales.jsonl).")
    ins.add_argument("--step", type=int, default=None, help="Only this step.")
    ins.add_argument("--prompt-id", default=None, help="One input's rationales across steps, side by side.")
    ins.add_argument("--top", type=_positive_int, default=None, metavar="K", help="K best rollouts by --by.")
    ins.add_argument("--bottom", type=_positive_int, default=None, metavar="K", help="K worst rollouts by --by.")
    ins.add_argument(
        "--by", default="reward", metavar="TERM", help="reward (default), advantage, length or a reward term."
    )
    ins.add_argument("--grep", default=None, metavar="TEXT", help="Rationale or prompt contains TEXT (any case).")
    ins.add_argument("--limit", type=_positive_int, default=20, help="Most rollouts listed by --step/--grep.")
    ins.add_argument("--columns", type=_positive_int, default=4, help="Most steps side by side for --prompt-id.")
    ins.set_defaults(func=cmd_inspect)

    rep = sub.add_parser("report", help="Write a self-contained HTML report of a run.")
    rep.add_argument("run_dir", help="Training output_dir (holds rationales.jsonl).")
    rep.add_argument("-o", "--output", default="report.html", help="Output HTML file.")
    rep.add_argument("--max-rows", type=_positive_int, default=5000, help="Rollouts in the table; more are sampled.")
    rep.add_argument("--page-size", type=_positive_int, default=50, help="Table rows per page.")
    rep.add_argument("--seed", type=int, default=0, help="Sampling seed for large logs.")
    rep.set_defaults(func=cmd_report)
