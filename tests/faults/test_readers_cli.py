"""Bad inputs of `grace-rl eval sts | encode | inspect | report` (issue 14, classes 2, 3, 4 and 7): one line
`error: <file>[:<line>]: ...`, exit status 2, no NaN printed, no input file overwritten; and the JSONL reader keeps
a raw U+2028 inside a string (lines split on "\\n" only)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from grace_rl.cli import main as cli_main
from grace_rl.data import load_supervised
from grace_rl.inspection.log import load_run

pytestmark = pytest.mark.faults

STSB = "main-captions\tMSRvid\t2012test\t{n:04d}\t{score}\tA man plays a guitar {n}.\tA man plays music {n}."
RECORD = {"step": 1, "prompt_id": "a", "prompt": "p", "rationale": "r", "rewards": {"contrastive": 1.0}, "reward": 1.0}


def _stsb(tmp: Path, *scores: str) -> Path:
    path = tmp / "sts.tsv"
    path.write_text("".join(STSB.format(n=n, score=s) + "\n" for n, s in enumerate(scores, 1)), encoding="utf-8")
    return path


def _file(tmp: Path, name: str, data: str | bytes) -> Path:
    path = tmp / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def _sick(tmp: Path, header: str, *rows: str) -> Path:
    return _file(tmp, "sick.tsv", "\n".join([header, *rows]) + "\n")


SICK_HEADER = "pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment"


def _run(tmp: Path, lines: list[str | bytes], summary: str | None = None, metrics: str | None = None) -> Path:
    run = tmp / "run"
    run.mkdir()
    blob = b"".join((x if isinstance(x, bytes) else x.encode("utf-8")) + b"\n" for x in lines)
    (run / "rationales.jsonl").write_bytes(blob)
    if summary is not None:
        (run / "grace_summary.json").write_text(summary)
    if metrics is not None:
        (run / "metrics.jsonl").write_text(metrics)
    return run


def _eval(t: Path, m: Path, data: Path, *extra: str, fmt: str = "stsb") -> list[str]:
    return [
        "eval",
        "sts",
        "--model",
        str(m),
        "--data",
        str(data),
        "--format",
        fmt,
        "--max-rationale-tokens",
        "1",
        *extra,
    ]


def _report_onto(t: Path, m: Path, name: str) -> list[str]:
    run = _run(t, [json.dumps(RECORD)], metrics='{"step": 1, "loss": 0.5}\n')
    return ["report", str(run), "-o", str(run / name)]


GOOD = json.dumps(RECORD)
# (id, argv from (tmp, model_dir), substrings of the one error line)
CASES = [
    # ---- eval sts: gold scores, limits, numbers (class 2) ----------------------------------------------------------
    ("sts-gold-99", lambda t, m: _eval(t, m, _stsb(t, "1.0", "99")), ["sts.tsv:2", "gold score '99'", "[0, 5]"]),
    ("sts-gold-negative", lambda t, m: _eval(t, m, _stsb(t, "-7", "1")), ["sts.tsv:1", "gold score '-7'"]),
    ("sts-gold-nan", lambda t, m: _eval(t, m, _stsb(t, "nan", "1")), ["sts.tsv:1", "gold score 'nan'"]),
    ("sts-gold-constant", lambda t, m: _eval(t, m, _stsb(t, "2", "2", "2")), ["sts.tsv", "every gold score is 2.0"]),
    ("sts-gold-not-a-number", lambda t, m: _eval(t, m, _stsb(t, "1", "high")), ["sts.tsv:2", "gold score 'high'"]),
    ("sts-limit-negative", lambda t, m: _eval(t, m, _stsb(t, "1", "2"), "--limit", "-2"), ["limit", "-2", ">= 2"]),
    (
        "sts-rationale-tokens-negative",
        lambda t, m: _eval(t, m, _stsb(t, "1", "2"))[:-2] + ["--max-rationale-tokens", "-3"],
        ["max_rationale_tokens must be an integer >= 0", "-3"],
    ),
    (
        "sts-temperature-nan",
        lambda t, m: _eval(t, m, _stsb(t, "1", "2"), "--num-rationales", "2", "--temperature", "nan"),
        ["temperature must be a finite number", "nan"],
    ),
    # ---- eval sts: unreadable files (class 4) ----------------------------------------------------------------------
    ("sts-too-few-fields", lambda t, m: _eval(t, m, _file(t, "sts.tsv", "a\tb\n")), ["sts.tsv:1", "needs 7"]),
    (
        "sts-not-utf8",
        lambda t, m: _eval(t, m, _file(t, "sts.tsv", STSB.format(n=1, score=1).encode() + b"\n\xff\xfe\n")),
        ["sts.tsv:2", "not UTF-8"],
    ),
    (
        "sick-missing-field",
        lambda t, m: _eval(t, m, _sick(t, SICK_HEADER, "1\ta\tb\t3.0\tX", "2\tc\td"), fmt="sick"),
        ["sick.tsv:3", "relatedness_score"],
    ),
    (
        "sick-header-without-score",
        lambda t, m: _eval(t, m, _sick(t, "pair_ID\tsentence_A\tsentence_B", "1\ta\tb"), fmt="sick"),
        ["sick.tsv:1", "lacks ['relatedness_score']"],
    ),
    (
        "sick-score-out-of-range",
        lambda t, m: _eval(t, m, _sick(t, SICK_HEADER, "1\ta\tb\t3.0\tX", "2\tc\td\t0.2\tX"), fmt="sick"),
        ["sick.tsv:3", "gold score '0.2'", "[1, 5]"],
    ),
    (
        "jsonl-sts-missing-score",
        lambda t, m: _eval(
            t,
            m,
            _file(
                t,
                "sts.jsonl",
                '{"sentence1": "a", "sentence2": "b", "score": 1}\n{"sentence1": "c", "sentence2": "d"}\n',
            ),
            fmt="jsonl",
        ),
        ["sts.jsonl:2", "missing field(s) ['score']"],
    ),
    (
        "jsonl-sts-score-a-string",
        lambda t, m: _eval(
            t,
            m,
            _file(
                t,
                "sts.jsonl",
                '{"sentence1": "a", "sentence2": "b", "score": 1}\n{"sentence1": "c", '
                '"sentence2": "d", "score": "x"}\n',
            ),
            fmt="jsonl",
        ),
        ["sts.jsonl:2", "gold score 'x'"],
    ),
    (
        "jsonl-sts-row-a-list",
        lambda t, m: _eval(t, m, _file(t, "sts.jsonl", '["a", "b", 1]\n'), fmt="jsonl"),
        ["sts.jsonl:1", "expected an object"],
    ),
    (
        "jsonl-sts-empty-sentence",
        lambda t, m: _eval(
            t, m, _file(t, "sts.jsonl", '{"sentence1": "", "sentence2": "b", "score": 1}\n'), fmt="jsonl"
        ),
        ["sts.jsonl:1", "sentence 1", "non-empty string"],
    ),
    # ---- encode ----------------------------------------------------------------------------------------------------
    (
        "encode-temperature-nan",
        lambda t, m: [
            "encode",
            "--model",
            str(m),
            "--input",
            str(_file(t, "in.txt", "a\nb\n")),
            "--output",
            str(t / "e.npy"),
            "--temperature",
            "nan",
        ],
        ["temperature must be a finite number"],
    ),
    (
        "encode-output-is-input",
        lambda t, m: [
            "encode",
            "--model",
            str(m),
            "--input",
            str(_file(t, "in.npy", "a\n")),
            "--output",
            str(t / "in.npy"),
        ],
        ["--output", "in.npy", "is an input of this command"],
    ),
    (
        "encode-input-not-utf8",
        lambda t, m: [
            "encode",
            "--model",
            str(m),
            "--input",
            str(_file(t, "in.txt", b"ok\n\xff\n")),
            "--output",
            str(t / "e.npy"),
        ],
        ["in.txt:2", "not UTF-8"],
    ),
    # ---- report -o onto an input (class 3) -------------------------------------------------------------------------
    ("report-onto-its-log", lambda t, m: _report_onto(t, m, "rationales.jsonl"), ["rationales.jsonl", "is an input"]),
    ("report-onto-its-metrics", lambda t, m: _report_onto(t, m, "metrics.jsonl"), ["metrics.jsonl", "is an input"]),
    ("report-onto-a-directory", lambda t, m: _report_onto(t, m, "."), ["is a directory", "report.html"]),
    # ---- rationale logs (class 4) ----------------------------------------------------------------------------------
    (
        "log-binary",
        lambda t, m: ["inspect", str(_run(t, [b"\x89PNG\r\x1a\xff", GOOD]))],
        ["rationales.jsonl:1", "not UTF-8"],
    ),
    ("log-line-a-number", lambda t, m: ["inspect", str(_run(t, [GOOD, "42"]))], ["rationales.jsonl:2", "got int 42"]),
    (
        "log-rewards-a-string",
        lambda t, m: ["inspect", str(_run(t, [json.dumps({**RECORD, "rewards": "high"}), GOOD]))],
        ["rationales.jsonl:1", "'rewards' must be an object"],
    ),
    (
        "log-step-a-string",
        lambda t, m: ["report", str(_run(t, [GOOD, json.dumps({**RECORD, "step": "2"})])), "-o", str(t / "r.html")],
        ["rationales.jsonl:2", "'step' must be an integer"],
    ),
    (
        "log-reward-a-list",
        lambda t, m: ["inspect", str(_run(t, [json.dumps({**RECORD, "reward": [1]})]))],
        ["rationales.jsonl:1", "'reward' must be a number or null"],
    ),
    (
        "log-torn-middle-line",
        lambda t, m: ["inspect", str(_run(t, [GOOD, GOOD[:20], GOOD]))],
        ["rationales.jsonl:2", "not valid JSON"],
    ),
    (
        "summary-corrupt",
        lambda t, m: ["inspect", str(_run(t, [GOOD], summary='{"before": '))],
        ["grace_summary.json", "not a readable JSON summary"],
    ),
    (
        "metrics-row-a-list",
        lambda t, m: ["inspect", str(_run(t, [GOOD], metrics="[1, 2]\n"))],
        ["metrics.jsonl:1", "must be a JSON object"],
    ),
]


@pytest.mark.parametrize("build, needles", [pytest.param(b, n, id=i) for i, b, n in CASES])
def test_reader_bad_input_is_one_line_exit_2(build, needles, tmp_path, tiny_model_dir, tally, capsys):
    argv = build(tmp_path, tiny_model_dir)
    inputs = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code = cli_main(argv)
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), (code, captured.err[-2000:])
    missing = [n for n in needles if n not in err[0]]
    assert not missing, f"message lacks {missing}: {err[0]}"
    assert "NaN" not in captured.out
    assert {p: p.read_bytes() for p in inputs} == inputs, "an input file changed"
    tally.bad_input()


def test_raw_line_separators_inside_strings_are_kept(tmp_path, tally):
    """U+2028, U+0085 and a form feed are legal inside a JSON string; `splitlines()` would cut the line there."""
    odd = "one\u2028two\x85three\x0cfour"
    rows = [{"query": f"q{i} {odd}", "positive": f"p{i}"} for i in range(3)]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert [r["query"] for r in load_supervised(path)] == [r["query"] for r in rows]
    run = _run(tmp_path, [json.dumps({**RECORD, "rationale": odd}, ensure_ascii=False)])
    assert load_run(run).records[0]["rationale"] == odd
