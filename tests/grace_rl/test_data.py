from __future__ import annotations

import json

import datasets
import pytest

from grace_rl.data import (
    DataValidationError,
    build_dataset,
    load_rows,
    load_supervised,
    load_unsupervised,
    validate_supervised,
)
from grace_rl.prompts import RationaleTemplate


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


GOOD = {"query": "q", "positive": "p", "negatives": ["n"]}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"positive": "p"}, "row 2: missing field 'query'"),
        ({"query": "   ", "positive": "p"}, "row 2: field 'query' is empty"),
        ({"query": 3, "positive": "p"}, "row 2: field 'query' must be a string"),
        ({"query": "q", "positive": "p", "negatives": "n"}, "row 2: field 'negatives' must be a list"),
        ({"query": "q", "positive": "p", "negatives": ["ok", ""]}, r"row 2: field 'negatives\[1\]' is empty"),
        ({"query": "q", "positive": "p", "label": 1}, r"row 2: unknown field\(s\) \['label'\]"),
        ({"query": "q" * 20001, "positive": "p"}, "row 2: field 'query' has 20001 characters"),
        ("just a string", "row 2: expected an object"),
    ],
)
def test_bad_rows_name_row_and_field(row, message):
    with pytest.raises(DataValidationError, match=message):
        validate_supervised([GOOD, row], source="f.jsonl")


def test_duplicate_ids_and_empty_input():
    with pytest.raises(DataValidationError, match="duplicate id 'x'"):
        validate_supervised([{**GOOD, "id": "x"}, {**GOOD, "id": "x"}])
    with pytest.raises(DataValidationError, match="no rows"):
        validate_supervised([])


def test_normalised_rows_and_defaults():
    rows = validate_supervised([{"query": "q", "positive": "p"}, {**GOOD, "id": 7}])
    assert rows == [
        {"prompt_id": "row-1", "query": "q", "positive": "p", "negatives": []},
        {"prompt_id": "7", "query": "q", "positive": "p", "negatives": ["n"]},
    ]


def test_jsonl_parquet_and_saved_dataset_load_the_same(tmp_path):
    rows = [{"id": str(i), "query": f"q{i}", "positive": f"p{i}", "negatives": [f"n{i}"]} for i in range(3)]
    jsonl = write_jsonl(tmp_path / "r.jsonl", rows)
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "r.parquet"))
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    expected = load_supervised(jsonl)
    assert load_supervised(tmp_path / "r.parquet") == expected
    assert load_supervised(tmp_path / "saved") == expected
    assert len(load_supervised(jsonl, max_rows=2)) == 2


def test_broken_json_line_and_format_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q", "positive": "p"}\n{"query": \n', encoding="utf-8")
    with pytest.raises(DataValidationError, match="line 2 is not valid JSON"):
        load_rows(bad)
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(DataValidationError, match="unsupported format"):
        load_rows(tmp_path / "x.csv")
    with pytest.raises(FileNotFoundError):
        load_rows(tmp_path / "missing.jsonl")


def test_build_dataset_has_chat_prompt():
    ds = build_dataset(validate_supervised([GOOD]), RationaleTemplate("Explain."))
    assert ds[0]["prompt"] == [{"role": "system", "content": "Explain."}, {"role": "user", "content": "q"}]
    assert ds[0]["negatives"] == ["n"] and ds[0]["prompt_id"] == "row-1"


def test_unsupervised_texts_from_txt_and_jsonl(tmp_path):
    (tmp_path / "t.txt").write_text("first text\n\n  \nsecond text\n", encoding="utf-8")
    rows = load_unsupervised(tmp_path / "t.txt")
    assert [r["query"] for r in rows] == ["first text", "second text"]
    assert all(r["positive"] == r["query"] and r["negatives"] == [] for r in rows)
    write_jsonl(tmp_path / "t.jsonl", [{"body": "a"}, {"body": "b"}])
    assert [r["query"] for r in load_unsupervised(tmp_path / "t.jsonl", text_column="body")] == ["a", "b"]
    with pytest.raises(DataValidationError, match="row 1: missing field 'text'"):
        load_unsupervised(tmp_path / "t.jsonl")
    write_jsonl(tmp_path / "bad.jsonl", [{"text": "ok"}, {"text": 5}])
    with pytest.raises(DataValidationError, match="row 2: field 'text' must be a string"):
        load_unsupervised(tmp_path / "bad.jsonl")
