"""The protocol's report (table, JSON, PNG) and `grace-rl eval protocol` end to end on the tiny model."""

from __future__ import annotations

import json
import shutil

import pytest

from grace_rl.cli import main as cli_main
from grace_rl.eval import devsets
from grace_rl.eval.protocol_report import format_report, write_report
from grace_rl.eval.sts import evaluate_sts

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _points(values):
    return [
        {"budget": b, "spearman": v, "ci_low": v - 2, "ci_high": v + 2, "mean_rationale_tokens": min(b, 6.5)}
        for b, v in zip((0, 8, 16), values, strict=True)
    ]


def _results():
    ds = {"name": "stsb-dev", "source": "/x/sts-dev.csv", "kind": "full", "pairs_total": 1500, "dropped": 87,
          "pairs_kept": 1413, "limit": 100, "pairs": 100, "digest": "d"}  # fmt: skip
    return {
        "protocol_version": 1,
        "budgets": [0, 8, 16],
        "bootstrap": {"n": 1000, "seed": 0, "level": 0.95},
        "datasets": [ds],
        "models": [
            {
                "label": "base",
                "model": "m",
                "role": "base",
                "training_budget": None,
                "results": {"stsb-dev": {"points": _points([50.0, 55.0, 40.0]), "seconds": 3.0, "cached": True}},
            },
            {
                "label": "run1",
                "model": "runs/run1",
                "role": "trained",
                "training_budget": 16,
                "results": {"stsb-dev": {"points": _points([51.0, 56.0, 58.0]), "seconds": 4.0, "cached": False}},
            },
        ],  # fmt: skip
        "headlines": [
            {
                "model": "run1",
                "dataset": "stsb-dev",
                "training_budget": 16,
                "trained_spearman": 58.0,
                "base_best_budget": 8,
                "base_spearman": 55.0,
                "difference": 3.0,
                "ci_low": 1.0,
                "ci_high": 5.0,
            }
        ],  # fmt: skip
        "seconds": 7.0,
    }


def test_report_table_json_and_png(tmp_path):
    results = _results()
    text = format_report(results)
    assert "stsb-dev: 1413 of 1500 pairs held out (87 dropped), 100 evenly spaced evaluated" in text
    assert "| base " in text and "55.00^ [53.00, 57.00] 6.5 tok" in text  # base's best budget marked
    assert "| run1 (trained @ 16) " in text and "58.00* [56.00, 60.00] 6.5 tok" in text
    assert "| run1  | stsb-dev | 58.00 @ 16 | 55.00 @ 8" in text and "+3.00 [+1.00, +5.00]" in text
    assert "base/stsb-dev 3.0 s (cached)" in text
    files = write_report(results, tmp_path / "out" / "proto")
    assert files == {"json": str(tmp_path / "out" / "proto.json"), "plot": str(tmp_path / "out" / "proto.png")}
    assert json.loads((tmp_path / "out" / "proto.json").read_text()) == results
    assert (tmp_path / "out" / "proto.png").read_bytes()[:8] == PNG_MAGIC
    base_only = {**results, "models": results["models"][:1], "headlines": []}
    assert "Headline" not in format_report(base_only)
    write_report(base_only, tmp_path / "base_only")
    assert (tmp_path / "base_only.png").read_bytes()[:8] == PNG_MAGIC


@pytest.fixture()
def trained_run(tmp_path, tiny_model_dir):
    """A GRACE output dir (full weights, no adapter) holding the tiny model, trained at a 3-token budget."""
    run = tmp_path / "run_seed1"
    shutil.copytree(tiny_model_dir, run)
    (run / "grace_config.json").write_text(json.dumps({"max_rationale_tokens": 3, "pooling": "mean"}))
    return run


def test_cli_protocol_tiny_model(tmp_path, tiny_model_dir, trained_run, monkeypatch, capsys):
    monkeypatch.delenv(devsets.SHARED_ENV, raising=False)
    monkeypatch.setattr(devsets, "DEFAULT_SHARED", tmp_path / "absent")  # use the shipped samples
    prefix = tmp_path / "res" / "proto"
    argv = ["eval", "protocol", "--base", str(tiny_model_dir), "--trained", str(trained_run), "--budgets", "0,2"]
    argv += ["--limit", "12", "--bootstrap", "50", "--cache-dir", str(tmp_path / "cache"), "--out", str(prefix)]
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert "Headline" in out and "run_seed1 (trained @ 3)" in out and f"wrote {prefix}.json" in out
    results = json.loads(prefix.with_suffix(".json").read_text())
    assert prefix.with_suffix(".png").read_bytes()[:8] == PNG_MAGIC
    assert results["budgets"] == [0, 2, 3]  # the training budget joins the sweep
    assert [(d["name"], d["kind"], d["pairs"], d["dropped"]) for d in results["datasets"]] == [
        ("stsb-dev", "sample", 12, 0),
        ("sick-trial", "sample", 12, 0),
    ]
    base, trained = results["models"]
    for model in results["models"]:
        for r in model["results"].values():
            assert [p["budget"] for p in r["points"]] == [0, 2, 3] and not r["cached"]
            assert r["points"][0]["mean_rationale_tokens"] == 0
            assert all(0 < p["mean_rationale_tokens"] <= p["budget"] for p in r["points"][1:])
            assert all(p["ci_low"] <= p["spearman"] <= p["ci_high"] for p in r["points"])
    # The trained run holds the base weights, so every point matches and the headline is base@3 - base@best.
    assert {k: v["points"] for k, v in trained["results"].items()} == {
        k: v["points"] for k, v in base["results"].items()
    }
    for h in results["headlines"]:
        points = base["results"][h["dataset"]]["points"]
        assert h["model"] == "run_seed1" and h["training_budget"] == 3
        assert h["base_spearman"] == max(p["spearman"] for p in points)
        assert h["difference"] == pytest.approx(points[2]["spearman"] - h["base_spearman"], abs=0.011)
        assert h["difference"] <= 0
    # The same point as the plain STS evaluation of those pairs.
    from grace_rl.encoder import GraceEncoder

    (stsb,) = devsets.load_dev_sets(["stsb-dev"], limit=12)
    rows = tmp_path / "pairs.jsonl"
    rows.write_text(
        "".join(json.dumps({"sentence1": p.a, "sentence2": p.b, "score": p.score}) + "\n" for p in stsb.pairs)
    )
    plain = evaluate_sts(GraceEncoder.from_pretrained(str(tiny_model_dir)), rows, "jsonl", max_rationale_tokens=2)
    assert base["results"]["stsb-dev"]["points"][1]["spearman"] == pytest.approx(plain["spearman"], abs=0.011)
    # A second call reads every sweep from the cache.
    assert cli_main(argv) == 0
    again = json.loads(prefix.with_suffix(".json").read_text())
    assert all(r["cached"] for m in again["models"] for r in m["results"].values())
    assert again["headlines"] == results["headlines"]


def test_cli_constants_match_the_library():
    """The CLI repeats two constants so that `grace-rl --help` does not import numpy; they must not drift."""
    from grace_rl.commands import eval_protocol
    from grace_rl.eval.specs import DEFAULT_BUDGETS

    assert tuple(devsets.DEV_SETS) == eval_protocol.DEV_SET_NAMES
    assert eval_protocol.DEFAULT_BUDGETS == DEFAULT_BUDGETS


def test_cli_protocol_errors(tmp_path, capsys):
    assert cli_main(["eval", "protocol", "--trained", str(tmp_path), "--limit", "5", "--no-cache"]) == 2
    assert "grace_config.json" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["eval", "protocol", "--datasets", "mnli"])
    assert "choose from" in capsys.readouterr().err


def test_cli_protocol_matches_the_prompt_of_a_run_trained_with_another_instruction(
    tmp_path, tiny_model_dir, trained_run, monkeypatch, capsys
):
    """A run trained with its own instruction is compared with the base under the default instruction *and* under
    the run's instruction (`base+prompt`); the bar is the best of both. The run holds the base weights, so its sweep
    must equal base+prompt's exactly, and differ from the default-prompt base (the prompt is in the hidden states)."""
    monkeypatch.delenv(devsets.SHARED_ENV, raising=False)
    monkeypatch.setattr(devsets, "DEFAULT_SHARED", tmp_path / "absent")
    meta = {"max_rationale_tokens": 3, "pooling": "mean", "instruction": "Paraphrase the text."}
    (trained_run / "grace_config.json").write_text(json.dumps(meta))
    prefix = tmp_path / "proto"
    argv = ["eval", "protocol", "--base", str(tiny_model_dir), "--trained", str(trained_run), "--budgets", "0,2"]
    argv += ["--limit", "10", "--bootstrap", "50", "--cache-dir", str(tmp_path / "cache"), "--out", str(prefix)]
    argv += ["--datasets", "stsb-dev"]
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert "base+prompt: the base model under the instruction 'Paraphrase the text.'" in out
    results = json.loads(prefix.with_suffix(".json").read_text())
    base, prompted, trained = results["models"]
    assert (base["label"], prompted["label"], trained["label"]) == ("base", "base+prompt", "run_seed1")
    assert (
        prompted["role"] == "base" and prompted["instruction"] == "Paraphrase the text." and "instruction" not in base
    )
    points = {m["label"]: m["results"]["stsb-dev"]["points"] for m in results["models"]}
    assert points["base+prompt"] == points["run_seed1"]
    assert [p["spearman"] for p in points["base+prompt"]] != [p["spearman"] for p in points["base"]]
    (h,) = results["headlines"]
    best = max((p["spearman"], m) for m in ("base", "base+prompt") for p in points[m])
    assert (h["base_spearman"], h["base_model"]) == (round(best[0], 2), best[1])
    # The base under the run's prompt has its own cache entry: a rerun reads all three sweeps back.
    assert cli_main(argv) == 0
    again = json.loads(prefix.with_suffix(".json").read_text())
    assert all(r["cached"] for m in again["models"] for r in m["results"].values())
    assert [m["results"]["stsb-dev"]["points"] for m in again["models"]] == list(points.values())


def test_cli_protocol_evaluates_the_base_model_under_a_given_instruction(
    tmp_path, tiny_model_dir, monkeypatch, capsys
):
    """`--instruction` without a trained run: the base model under the default and under the given prompt."""
    monkeypatch.delenv(devsets.SHARED_ENV, raising=False)
    monkeypatch.setattr(devsets, "DEFAULT_SHARED", tmp_path / "absent")
    prefix = tmp_path / "proto"
    argv = ["eval", "protocol", "--base", str(tiny_model_dir), "--instruction", "Paraphrase the text."]
    argv += ["--budgets", "0,2", "--limit", "8", "--bootstrap", "20", "--no-cache", "--out", str(prefix)]
    assert cli_main([*argv, "--datasets", "stsb-dev"]) == 0
    assert "base+prompt: the base model under the instruction 'Paraphrase the text.'" in capsys.readouterr().out
    base, prompted = json.loads(prefix.with_suffix(".json").read_text())["models"]
    assert (base["label"], prompted["label"], prompted["instruction"]) == (
        "base",
        "base+prompt",
        "Paraphrase the text.",
    )
    assert prompted["role"] == "base" and prompted["model"] == str(tiny_model_dir)
    assert cli_main([*argv[:4], "--instruction", " ", "--no-cache"]) == 2
    assert "--instruction: empty" in capsys.readouterr().err
