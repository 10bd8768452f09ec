"""`grace-rl eval retrieval-protocol` end to end on a tiny dev set: the tiny random policy, BM25, all-MiniLM-L6-v2
alone and fed the policy's rationales; rows, intervals and comparisons in the JSON; cached rows on a second run."""

from __future__ import annotations

import json

import pytest

from grace_rl.cli import main as cli_main

DOCS = [
    ("d0", "Gluons bind quarks", "Quantum chromodynamics describes how gluons bind quarks inside protons."),
    ("d1", "Markets", "Stock markets fell sharply after the central bank raised interest rates."),
    ("d2", "Cats", "Domestic cats sleep for most of the day and hunt at dusk."),
    ("d3", "Vaccines", "Measles vaccination prevents outbreaks in children."),
]
QUERIES = [("q0", "Gluons hold quarks together."), ("q1", "Interest rate rises hurt stocks."), ("q2", "Cats hunt.")]


@pytest.fixture()
def tiny_devset(tmp_path):
    data = tmp_path / "scifact"
    data.mkdir()
    (data / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in DOCS)
    )
    (data / "dev_queries.jsonl").write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in QUERIES))
    (data / "dev_qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq0\td0\t1\nq1\td1\t1\nq2\td2\t1\n")
    return data


def test_cli_retrieval_protocol_rows_and_cache(tmp_path, tiny_model_dir, tiny_devset, capsys):
    out = tmp_path / "ret.json"
    argv = [
        "eval",
        "retrieval-protocol",
        "--base",
        str(tiny_model_dir),
        "--encoder",
        "all-minilm-l6-v2",
        "--data-dir",
        str(tiny_devset),
        "--budgets",
        "0,2",
        "--bootstrap",
        "50",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--versus",
        "all-minilm-l6-v2,BM25",
        "--out",
        str(out),
    ]
    assert cli_main(argv) == 0
    result = json.loads(out.read_text())
    rows = {(r["label"], r["budget"]): r for r in result["rows"]}
    assert set(rows) == {
        ("BM25", 0),
        ("base", 0),
        ("base", 2),
        ("all-minilm-l6-v2", 0),
        ("all-minilm-l6-v2 + base rationales", 2),
    }
    for r in rows.values():
        assert r["ndcg@10_ci"][0] <= r["ndcg@10"] <= r["ndcg@10_ci"][1]
        assert 0 <= r["recall@100"] <= 100
    assert rows[("BM25", 0)]["ndcg@10"] > 50 and rows[("all-minilm-l6-v2", 0)]["ndcg@10"] == 100.0
    assert rows[("base", 2)]["mean_rationale_tokens"] <= 2
    assert result["devset"]["queries"] == 3 and result["devset"]["documents"] == 4
    (versus,) = [c for c in result["comparisons"] if c["what"] == "versus"]
    assert versus["ndcg@10"] == pytest.approx(100.0 - rows[("BM25", 0)]["ndcg@10"], abs=0.01)
    printed = capsys.readouterr().out
    assert "BM25" in printed and "minus" in printed
    assert len(list((tmp_path / "cache").glob("*.json"))) == 4  # BM25, base, MiniLM, MiniLM + base rationales
    assert cli_main(argv) == 0  # a second run reads every row from the cache
    assert json.loads(out.read_text())["rows"] == result["rows"]


def test_cli_retrieval_protocol_names_missing_files(tmp_path, capsys):
    code = cli_main(["eval", "retrieval-protocol", "--data-dir", str(tmp_path), "--out", str(tmp_path / "x.json")])
    assert code == 2
    assert "build_scifact_data.py" in capsys.readouterr().err


@pytest.mark.parametrize(("flag", "value"), [("--limit", "-1"), ("--batch-size", "0"), ("--doc-max-tokens", "0")])
def test_cli_retrieval_protocol_refuses_bad_numbers_before_any_work(tmp_path, tiny_devset, capsys, flag, value):
    out = tmp_path / "x.json"
    code = cli_main(["eval", "retrieval-protocol", "--data-dir", str(tiny_devset), flag, value, "--out", str(out)])
    assert code == 2
    assert flag in capsys.readouterr().err
    assert not out.exists()
