"""The run inspector (grace_rl.inspection.log) and `grace-rl inspect` on a synthetic run with known values."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from grace_rl.cli import main as cli_main
from grace_rl.inspection.log import (
    filter_records,
    is_truncated,
    load_run,
    metric_series,
    ordered_records,
    prompt_history,
    rank_records,
    sample_records,
    summarize_steps,
    value_of,
)


def synthetic_records() -> list[dict]:
    """3 steps x prompts a, b x 2 rollouts. contrastive = step + 0.5 g + 0.25 [p == b]; truncation = -1 for g = 1 at
    step 1; reward = contrastive + truncation; advantage = reward - group mean. Step 3, b, g = 1 is degenerate (null
    reward and contrastive); step 2, b, g = 1 mentions cats."""
    records = []
    for step in (1, 2, 3):
        for pid in ("a", "b"):
            group = []
            for g in (0, 1):
                contrastive = step + 0.5 * g + (0.25 if pid == "b" else 0.0)
                trunc = -1.0 if (step == 1 and g == 1) else -0.0
                text = f"step {step} prompt {pid} rollout {g}" + (
                    " with Cats" if (step, pid, g) == (2, "b", 1) else ""
                )
                group.append(
                    {
                        "step": step,
                        "prompt_id": pid,
                        "prompt": f"input {pid}",
                        "rationale": text,
                        "rewards": {"contrastive": contrastive, "truncation": trunc},
                        "reward": contrastive + trunc,
                    }
                )
            if (step, pid) == (3, "b"):
                group[1]["rewards"]["contrastive"] = None
                group[1]["reward"] = None
            finite = [r["reward"] for r in group if r["reward"] is not None]
            for r in group:
                r["advantage"] = 0.0 if r["reward"] is None else r["reward"] - sum(finite) / len(finite)
            records += group
    return records


def write_run(path: Path, records: list[dict] | None = None, metrics: list[dict] | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r) for r in (records if records is not None else synthetic_records())]
    (path / "rationales.jsonl").write_text("\n".join(lines) + "\n")
    if metrics is not None:
        (path / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    (path / "grace_summary.json").write_text(json.dumps({"before": {"spearman": 10.0, "n": 5}, "steps": 3}))
    return path


@pytest.fixture()
def run_dir(tmp_path) -> Path:
    return write_run(tmp_path / "run")


def test_load_run_without_metrics(run_dir):
    run = load_run(run_dir)
    assert len(run.records) == 12 and run.metrics == [] and run.steps == [1, 2, 3]
    assert run.terms == ["contrastive", "truncation"] and run.summary["steps"] == 3


def test_step_summary_by_hand(run_dir):
    s1, s2, s3 = summarize_steps(load_run(run_dir).records)
    assert (s1.step, s1.rollouts, s1.prompts) == (1, 4, 2)
    assert s1.terms["contrastive"] == pytest.approx(1.375)  # (1 + 1.5 + 1.25 + 1.75) / 4
    assert s1.terms["truncation"] == pytest.approx(-0.5)
    assert s1.reward == pytest.approx(0.875)
    assert s1.truncation_rate == pytest.approx(0.5) and s2.truncation_rate == 0.0  # -0.0 is not truncated
    assert s1.length == pytest.approx(6.0) and s2.length == pytest.approx((6 * 3 + 8) / 4)
    assert s3.terms["contrastive"] == pytest.approx((3 + 3.5 + 3.25) / 3)  # the null value is skipped
    assert s2.advantage_std == pytest.approx(0.25)  # every advantage is +-0.25


def test_truncated_field_wins_over_the_term():
    assert is_truncated({"rewards": {"truncation": -1.0}}) is True
    assert is_truncated({"rewards": {"truncation": -1.0}, "truncated": False}) is False
    assert is_truncated({"rewards": {"contrastive": 1.0}}) is None


def test_filters(run_dir):
    records = load_run(run_dir).records
    assert {r["step"] for r in filter_records(records, step=2)} == {2} and len(filter_records(records, step=2)) == 4
    only_b = filter_records(records, prompt_id="b")
    assert len(only_b) == 6 and {r["prompt_id"] for r in only_b} == {"b"}
    hits = filter_records(records, grep="cATs")
    assert [(r["step"], r["prompt_id"]) for r in hits] == [(2, "b")]
    assert filter_records(records, grep="input a", step=1, prompt_id="a") == records[:2]  # grep sees the prompt too
    assert filter_records([{"step": 1, "prompt_id": 7, "rationale": ""}], prompt_id="7")  # ids compare as text


def test_rank_top_bottom_by_any_key(run_dir):
    records = load_run(run_dir).records
    top = rank_records(records, "reward", 2)
    assert [r["reward"] for r in top] == [3.5, 3.25]  # 3.75 (step 3, b, 1) is null
    bottom = rank_records(records, "reward", 1, bottom=True)
    assert bottom[0]["reward"] == pytest.approx(0.5) and bottom[0]["step"] == 1  # 1.5 - 1 (truncated)
    assert rank_records(records, "contrastive", 1)[0]["rewards"]["contrastive"] == 3.5
    assert rank_records(records, "length", 1)[0]["rationale"].endswith("with Cats")
    assert rank_records(records, "advantage", 1, bottom=True)[0]["advantage"] == pytest.approx(-0.25)
    assert len(rank_records(records, "reward", 100)) == 11  # the null reward is left out
    with pytest.raises(ValueError, match="cannot rank by 'bogus'.*contrastive"):
        rank_records(records, "bogus", 1)


def test_prompt_history_groups_by_step_best_first(run_dir):
    history = prompt_history(load_run(run_dir).records, "b")
    assert list(history) == [1, 2, 3]
    assert [value_of(r, "reward") for r in history[1]] == [1.25, 0.75]
    assert history[3][-1]["reward"] is None  # null last


def test_torn_last_line_is_skipped_with_a_warning(run_dir, caplog):
    with (run_dir / "rationales.jsonl").open("a") as f:
        f.write('{"step": 4, "prompt_id": "a", "ratio')
    with caplog.at_level(logging.WARNING):
        run = load_run(run_dir)
    assert len(run.records) == 12 and "torn last line" in caplog.text


def test_metrics_and_errors(tmp_path):
    metrics = [{"step": 1, "loss": 0.5, "epoch": 0.1}, {"step": 2, "loss": 0.25, "grace/contrastive": 1.0}]
    run = load_run(write_run(tmp_path / "m", metrics=metrics))
    assert metric_series(run.metrics) == {"loss": ([1, 2], [0.5, 0.25]), "grace/contrastive": ([2], [1.0])}
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="rationale_log: true"):
        load_run(tmp_path / "empty")
    write_run(tmp_path / "bad", records=[{"step": 1}])
    with pytest.raises(
        ValueError, match=r"rationales.jsonl:1: the record lacks \['prompt_id', 'rationale', 'rewards'\]"
    ):
        load_run(tmp_path / "bad")


def test_sample_records_keeps_extremes_and_says_so(run_dir):
    records = load_run(run_dir).records
    kept, note = sample_records(records, 100)
    assert kept == records and note == "all 12 rollouts"
    records = [{**r, "n": i} for i, r in enumerate(records * 10)]  # 120 rows; extremes: 10 x 3.5, 10 x 0.5
    kept, note = sample_records(records, 40, seed=3)
    assert len(kept) == 40 and note.startswith("a sample of 40 of 120 rollouts: the 2 highest and 2 lowest")
    numbers = [r["n"] for r in kept]
    assert numbers == sorted(set(numbers))  # distinct rows, log order
    assert {9, 21, 1, 13} <= set(numbers)  # the first two 3.5s and the first two 0.5s (ties keep log order)
    assert sample_records(records, 40, seed=3) == (kept, note)
    assert sample_records(records, 40, seed=4) != (kept, note)


# --- grace-rl inspect -------------------------------------------------------------------------------------------


@pytest.fixture()
def cli(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "220")

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli_main(["inspect", "--layout", "table", *argv])  # captured output is not a terminal
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_cli_summary(cli, run_dir):
    code, out, _ = cli(str(run_dir))
    assert code == 0
    assert "12 rollouts" in out and "no metrics.jsonl" in out and "STS before 10.0" in out
    means = out.split("Top 5 of 12 rollouts")[0]
    lines = [line for line in means.splitlines() if line.strip().startswith("│")]
    assert len(lines) == 3  # one row per step
    assert "+0.875" in lines[0] and "50%" in lines[0] and "+1.375" in lines[0]


def test_cli_top_bottom(cli, run_dir):
    code, out, _ = cli(str(run_dir), "--top", "1", "--by", "contrastive", "--bottom", "1")
    assert code == 0
    assert "Top 1 by contrastive" in out and "Bottom 1 by contrastive" in out
    assert "step 3 prompt a rollout 1" in out and "step 1 prompt a rollout 0" in out
    assert "prompt: input a" in out and "rationale: step 3 prompt a rollout 1" in out  # labelled, even in a table
    assert out.count(" rollout ") == 2
    code, out, _ = cli(str(run_dir), "--top", "3", "--by", "reward", "--step", "1")
    assert out.count("step 1 prompt") == 3 and "step 2 prompt" not in out


def test_cli_step_grep_and_limit(cli, run_dir):
    code, out, _ = cli(str(run_dir), "--step", "2")
    assert code == 0 and out.count("step 2 prompt") == 4 and "step 1 prompt" not in out
    code, out, _ = cli(str(run_dir), "--grep", "cats")
    assert "1 rollouts (containing 'cats')" in out and "with Cats" in out
    code, out, _ = cli(str(run_dir), "--grep", "prompt", "--limit", "2")
    assert out.count("rollout 0") + out.count("rollout 1") == 2 and "10 more not shown" in out
    code, out, _ = cli(str(run_dir), "--grep", "zebra")
    assert code == 0 and "No rollouts match (containing 'zebra')" in out


def test_cli_prompt_id_side_by_side(cli, run_dir):
    code, out, _ = cli(str(run_dir), "--prompt-id", "a")
    assert code == 0
    header = next(line for line in out.splitlines() if "step 1" in line and "step 3" in line)
    assert header.index("step 1") < header.index("step 2") < header.index("step 3")  # columns, side by side
    assert out.count("prompt a rollout") == 6 and "prompt b" not in out and "truncated" in out
    code, out, _ = cli(str(run_dir), "--prompt-id", "a", "--columns", "2")
    assert "showing 2 evenly spaced" in out and "step 2 prompt" not in out and "step 3 prompt a" in out


def test_cli_errors_name_the_value(cli, run_dir):
    for argv, message in [
        (["--step", "9"], "--step 9 is not in the log (steps: 1..3)"),
        (["--prompt-id", "zzz"], "--prompt-id 'zzz' is not in the log; ids look like ['a', 'b']"),
        (["--top", "1", "--by", "bogus"], "cannot rank by 'bogus'"),
        (["--by", "bogus"], "cannot rank by 'bogus'"),  # before anything prints
    ]:
        code, _, err = cli(str(run_dir), *argv)
        assert code == 2 and message in err, (argv, err)
    code, _, err = cli(str(run_dir.parent / "missing"))
    assert code == 2 and "not a directory" in err


def advantage_run(path: Path) -> Path:
    """Step 1: group `flat` (every rollout reward 9, advantage 0: nothing to learn) and group `spread` (rewards 1 and
    3, advantages -1 and +1); step 2: group `slight` (advantages -0.5 and +0.5). By reward, `flat` fills the top."""
    records = []
    for step, pid, rewards in ((1, "flat", (9.0, 9.0, 9.0)), (1, "spread", (1.0, 3.0)), (2, "slight", (2.0, 3.0))):
        mean = sum(rewards) / len(rewards)
        records += [
            {"step": step, "prompt_id": pid, "prompt": f"input {pid}", "rationale": f"{pid} rollout {g}",
             "rewards": {"contrastive": r}, "reward": r, "advantage": r - mean}
            for g, r in enumerate(rewards)
        ]  # fmt: skip
    records.append({**records[-1], "rationale": "no advantage logged", "advantage": None})
    return write_run(path, records)


def test_rollouts_are_ordered_by_largest_absolute_advantage(tmp_path):
    records = load_run(advantage_run(tmp_path / "run")).records
    ordered = ordered_records(records)
    assert [r["rationale"] for r in ordered] == [
        "spread rollout 0",  # |-1|, first in log order of the tie
        "spread rollout 1",
        "slight rollout 0",
        "slight rollout 1",
        "flat rollout 0",
        "flat rollout 1",
        "flat rollout 2",
        "no advantage logged",  # no value: last, kept
    ]
    assert value_of(records[3], "abs_advantage") == 1.0 and value_of(records[-1], "abs_advantage") is None
    assert [r["prompt_id"] for r in rank_records(records, "reward", 3)] == ["flat"] * 3  # the uninformative view


def test_cli_default_view_shows_the_largest_absolute_advantages_and_says_so(cli, tmp_path):
    run = advantage_run(tmp_path / "run")
    code, out, _ = cli(str(run))
    assert code == 0 and "Per-step means" in out
    listed = out.split("Top 5 of 8 rollouts by |advantage|, largest first")[1]
    order = ("spread rollout 0", "spread rollout 1", "slight rollout 0", "slight rollout 1")
    assert [listed.index(n) for n in order] == sorted(listed.index(n) for n in order)
    assert "flat rollout 0" in listed and "flat rollout 1" not in listed  # five shown: the zero-advantage ones last
    assert "Ordered by |advantage|; --by TERM for another order" in out
    code, out, _ = cli(str(run), "--top", "2")  # --top without --by: |advantage| too
    assert "Top 2 by |advantage|, largest first" in out and out.count("spread rollout") == 2 and "flat" not in out
    code, out, _ = cli(str(run), "--step", "1", "--limit", "2")  # a listing: the same order
    assert "5 rollouts (step 1), largest |advantage| first" in out and out.count("spread rollout") == 2
    code, out, _ = cli(str(run), "--bottom", "1", "--by", "reward")
    assert "Bottom 1 by reward, smallest first" in out and "spread rollout 0" in out
