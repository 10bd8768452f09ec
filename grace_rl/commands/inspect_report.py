"""`grace-rl inspect RUN_DIR` (rich, in the terminal) and `grace-rl report RUN_DIR -o report.html`."""

from __future__ import annotations

import argparse

from grace_rl.commands import HelpFormatter, examples


def cmd_inspect(args: argparse.Namespace) -> int:
    from grace_rl.inspection.inspector import Selection, inspect_run  # rich only when a run is shown

    fields = ("step", "prompt_id", "grep", "top", "bottom", "by", "limit", "columns", "layout")
    inspect_run(args.run_dir, Selection(**{name: getattr(args, name) for name in fields}))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from grace_rl.inspection.log import load_run
    from grace_rl.inspection.report import report_inputs, write_report  # matplotlib only when a report is made
    from grace_rl.run_files import refuse_overwriting

    refuse_overwriting(args.output, report_inputs(args.run_dir))  # before the log is read
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
    ins = sub.add_parser(
        "inspect",
        help="Browse a run's rationale log in the terminal.",
        description="Browse a run's rationale log: per-step means and the rollouts with the largest |advantage| (no "
        "selection), or the selected rollouts with their prompt, rationale, reward and terms. Every list is ordered "
        "by --by (default: largest |advantage| first, the rollouts GRPO pushed hardest). Wide terminals get tables; "
        "narrow ones (< 100 columns) and pipes get one block per rollout with whole ids and texts.",
        formatter_class=HelpFormatter,
        epilog=examples(
            "grace-rl inspect runs/grace_smollm2_cpu",
            "grace-rl inspect runs/grace_smollm2_cpu --top 3                # largest |advantage|",
            "grace-rl inspect runs/grace_smollm2_cpu --top 3 --by reward",
            "grace-rl inspect runs/grace_smollm2_cpu --bottom 5 --by contrastive --step 24",
            "grace-rl inspect runs/grace_smollm2_cpu --prompt-id demo-0007 --columns 3",
            "grace-rl inspect runs/grace_smollm2_cpu --grep guitar | less",
        ),
    )
    ins.add_argument("run_dir", help="Training output_dir (holds rationales.jsonl).")
    ins.add_argument("--step", type=int, default=None, help="Only this step.")
    ins.add_argument("--prompt-id", default=None, help="One input's rationales across steps, side by side.")
    ins.add_argument("--top", type=_positive_int, default=None, metavar="K", help="K best rollouts by --by.")
    ins.add_argument("--bottom", type=_positive_int, default=None, metavar="K", help="K worst rollouts by --by.")
    ins.add_argument(
        "--by",
        default="abs_advantage",
        metavar="TERM",
        help="Order of every rollout list: abs_advantage (|advantage|), reward, advantage, length or a reward term.",
    )
    ins.add_argument("--grep", default=None, metavar="TEXT", help="Rationale or prompt contains TEXT (any case).")
    ins.add_argument("--limit", type=_positive_int, default=20, help="Most rollouts listed by --step/--grep.")
    ins.add_argument("--columns", type=_positive_int, default=4, help="Most steps side by side for --prompt-id.")
    ins.add_argument(
        "--layout",
        choices=("auto", "table", "blocks"),
        default="auto",
        help="table: columns side by side; blocks: one block per step or rollout with whole ids and texts; auto: "
        "blocks when the output is piped or the terminal is narrower than 100 columns, else tables.",
    )
    ins.set_defaults(func=cmd_inspect)

    rep = sub.add_parser(
        "report",
        help="Write a self-contained HTML report of a run.",
        description="Write one self-contained HTML file (no network): reward and term curves, per-step means and "
        "a searchable, sortable table of rollouts.",
        formatter_class=HelpFormatter,
        epilog=examples(
            "grace-rl report runs/grace_smollm2_cpu -o runs/grace_smollm2_cpu/report.html",
            "grace-rl report runs/big_run --max-rows 2000 --seed 1",
        ),
    )
    rep.add_argument("run_dir", help="Training output_dir (holds rationales.jsonl).")
    rep.add_argument("-o", "--output", default="report.html", help="Output HTML file.")
    rep.add_argument(
        "--max-rows", type=_positive_int, default=5000, help="Rollouts in the table; a larger log is sampled."
    )
    rep.add_argument("--page-size", type=_positive_int, default=50, help="Table rows per page.")
    rep.add_argument("--seed", type=int, default=0, help="Sampling seed for large logs.")
    rep.set_defaults(func=cmd_report)
