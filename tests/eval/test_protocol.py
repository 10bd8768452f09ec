"""The evaluation protocol's pure parts: normalisation, dedup, bootstrap intervals, headline, cache keys, dev sets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from grace_rl.eval import devsets
from grace_rl.eval.protocol import (
    ProtocolSettings,
    dedup_pairs,
    headline,
    model_specs,
    normalise,
    run_instruction,
    training_budget,
)
from grace_rl.eval.protocol_cache import cache_key, embedded_by, load_sweep, save_sweep
from grace_rl.eval.stats import Pair, paired_difference_interval, spearman, spearman_interval

REPO = Path(__file__).resolve().parents[2]


def test_normalise_hand_examples():
    assert normalise("  A man is playing a GUITAR. ") == "a man is playing a guitar"
    assert normalise("A  man\tis\nplaying a guitar") == "a man is playing a guitar"
    assert normalise('"Hello, world!!"') == "hello, world"  # inner punctuation stays
    assert normalise("Straße") == normalise("STRASSE")  # casefold, not lower
    assert normalise("ﬁne") == "fine"  # NFKC ligature
    assert normalise("...") == ""
    assert normalise("$5 (approx.)") == "$5 (approx"  # $ is a symbol (kept), brackets and dots are punctuation


def test_dedup_drops_a_pair_when_either_sentence_is_in_training():
    training = ["A man is playing a guitar.", "the cat sleeps", "..."]
    pairs = [
        ("A man is playing a guitar", "Someone plays music.", 4.0),  # a: in training after normalising
        ("A dog runs.", "THE CAT   SLEEPS!", 1.0),  # b: in training
        ("A dog runs.", "A puppy is running.", 4.5),  # kept
        ("!", "?", 0.0),  # both normalise to "", which never counts as overlap
        ("A man is playing the guitar", "A man plays a guitar", 4.8),  # near misses are kept (exact match only)
    ]
    kept, dropped = dedup_pairs(pairs, training)
    assert dropped == 2
    assert kept == [Pair("A dog runs.", "A puppy is running.", 4.5), pairs[3], pairs[4]]
    assert dedup_pairs(pairs, []) == ([Pair(*p) for p in pairs], 0)


def test_spearman_equals_scipy_with_ties():
    rng = np.random.default_rng(3)
    pred, gold = rng.normal(size=50), rng.integers(0, 5, size=50).astype(float)  # many ties in gold
    assert spearman(pred, gold) == pytest.approx(spearmanr(pred, gold).statistic * 100, abs=1e-9)


def test_bootstrap_interval_known_cases_and_determinism():
    gold = np.linspace(0, 5, 40)
    perfect = spearman_interval(gold * 2 + 1, gold, n_boot=200)
    assert (round(perfect.point, 6), round(perfect.low, 6), round(perfect.high, 6)) == (100, 100, 100)
    reversed_ = spearman_interval(-gold, gold, n_boot=200)
    assert round(reversed_.low, 6) == round(reversed_.high, 6) == -100
    noisy = np.random.default_rng(0).normal(size=40) + gold / 2
    ci = spearman_interval(noisy, gold, n_boot=500, seed=1)
    assert ci.low < ci.point < ci.high and ci.high - ci.low > 5  # a real interval around the estimate
    assert spearman_interval(noisy, gold, n_boot=500, seed=1) == ci  # seeded
    assert spearman_interval(noisy, gold, n_boot=500, seed=2) != ci
    wider = spearman_interval(noisy, gold, n_boot=500, seed=1, level=0.99)
    assert wider.low <= ci.low and wider.high >= ci.high
    with pytest.raises(ValueError, match="constant"):
        spearman_interval(np.ones(40), gold, n_boot=50)


def test_paired_difference_interval_sign():
    rng = np.random.default_rng(0)
    gold = rng.uniform(0, 5, size=200)
    good = gold + rng.normal(scale=0.5, size=200)
    bad = gold + rng.normal(scale=3.0, size=200)
    diff = paired_difference_interval(good, bad, gold, n_boot=300)
    assert diff.point == pytest.approx(spearman(good, gold) - spearman(bad, gold))
    assert 0 < diff.low < diff.point < diff.high
    flipped = paired_difference_interval(bad, good, gold, n_boot=300)
    assert flipped.point == pytest.approx(-diff.point)
    assert flipped.high < 0 and flipped.low == pytest.approx(-diff.high) and flipped.high == pytest.approx(-diff.low)
    same = paired_difference_interval(good, good, gold, n_boot=100)
    assert (same.point, same.low, same.high) == (0, 0, 0)  # paired: shared resampling noise cancels exactly


def test_headline_is_trained_at_its_budget_minus_base_at_its_best():
    gold = np.arange(10.0)
    rng = np.random.default_rng(0)

    def point(budget, noise):
        cos = gold + rng.normal(scale=noise, size=10)
        return {"budget": budget, "spearman": spearman(cos, gold), "cosines": cos.tolist()}

    base = [point(0, 4.0), point(8, 1.0), point(16, 8.0)]
    trained = [point(0, 8.0), point(8, 8.0), point(16, 0.0)]
    best = max(base, key=lambda p: p["spearman"])
    h = headline(trained, base, gold, 16, ProtocolSettings(n_boot=200))
    assert h["training_budget"] == 16 and h["trained_spearman"] == 100.0
    assert h["base_best_budget"] == best["budget"] and h["base_spearman"] == round(best["spearman"], 2)
    assert h["difference"] == round(100.0 - best["spearman"], 2)
    assert h["ci_low"] <= h["difference"] <= h["ci_high"]
    with pytest.raises(ValueError, match="no budget 32"):
        headline(trained, base, gold, 32, ProtocolSettings(n_boot=10))


def _lora_run(run: Path, tiny_model_dir: Path, seed: int) -> None:
    """A GRACE run dir holding a real LoRA adapter of the tiny model (`seed` changes its weights)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False),
    )
    model.save_pretrained(run)
    (run / "grace_config.json").write_text(json.dumps({"max_rationale_tokens": 8}))


def test_cache_key_changes_with_the_adapter(tmp_path, tiny_model_dir):
    run = tmp_path / "run"
    _lora_run(run, tiny_model_dir, seed=0)
    key = cache_key(run, "abc", [0, 8])
    assert key == cache_key(run, "abc", [8, 0])  # stable
    assert key["model"]["weights"]["adapter_model.safetensors"]["sha256"]
    assert key != cache_key(run, "abd", [0, 8]) and key != cache_key(run, "abc", [0, 8, 16])
    _lora_run(run, tiny_model_dir, seed=1)  # retrained in the same run dir
    assert cache_key(run, "abc", [0, 8]) != key
    assert cache_key("smollm2-135m-instruct", "abc", [0])["model"] == {"model": "smollm2-135m-instruct"}
    assert training_budget(run) == 8


def test_sweep_cache_round_trip(tmp_path):
    key = cache_key("some-model", "d1", [0, 8])
    assert load_sweep(tmp_path, key) is None
    record = {"key": key, "points": [{"budget": 0, "spearman": 1.5, "cosines": [0.1]}], "seconds": 2.0}
    path = save_sweep(tmp_path, record)
    assert load_sweep(tmp_path, key) == record
    path.write_text(json.dumps({**record, "key": cache_key("other", "d1", [0, 8])}))
    assert load_sweep(tmp_path, key) is None  # a file holding another key is not trusted
    path.write_text("{torn")
    assert load_sweep(tmp_path, key) is None


def test_training_budget_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="grace_config.json"):
        training_budget(tmp_path)
    (tmp_path / "grace_config.json").write_text(json.dumps({"max_rationale_tokens": "32"}))
    with pytest.raises(ValueError, match="max_rationale_tokens"):
        training_budget(tmp_path)


@pytest.mark.parametrize("text", ["{bad", "[1]"])
def test_a_run_config_that_is_not_a_json_object_is_an_error_naming_the_file(tmp_path, text):
    (tmp_path / "grace_config.json").write_text(text)
    for read in (training_budget, run_instruction):
        with pytest.raises(ValueError, match=r"grace_config\.json: (not valid JSON|expected a JSON object)"):
            read(tmp_path)


def test_run_instruction_default_when_unrecorded_and_an_error_when_not_a_string(tmp_path):
    from grace_rl.prompts import DEFAULT_INSTRUCTION

    assert run_instruction(tmp_path) == DEFAULT_INSTRUCTION  # no grace_config.json
    (tmp_path / "grace_config.json").write_text(json.dumps({"max_rationale_tokens": 8}))
    assert run_instruction(tmp_path) == DEFAULT_INSTRUCTION
    (tmp_path / "grace_config.json").write_text(json.dumps({"instruction": "Restate it."}))
    assert run_instruction(tmp_path) == "Restate it."
    for bad in (7, "  "):
        (tmp_path / "grace_config.json").write_text(json.dumps({"instruction": bad}))
        with pytest.raises(ValueError, match="instruction must be a non-empty string"):
            run_instruction(tmp_path)


def _training_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    row = {"id": "r1", "query": "A man is playing a guitar.", "positive": "p one", "negatives": ["n one"]}
    (data / "demo_train.jsonl").write_text(json.dumps(row) + "\n")
    (data / "demo_train_dcg.jsonl").write_text(json.dumps({**row, "query": "dcg query", "positive_ids": ["d"]}) + "\n")
    (data / "demo_corpus.jsonl").write_text(json.dumps({"id": "d", "text": "corpus text"}) + "\n")
    (data / "demo_unsup.txt").write_text("unsup line\n")
    return data


def test_training_texts_cover_every_shipped_file(tmp_path):
    data = _training_dir(tmp_path)
    texts = devsets.training_texts(data)
    assert sorted(set(texts)) == sorted(
        {"A man is playing a guitar.", "p one", "n one", "dcg query", "corpus text", "unsup line"}
    )
    (data / "demo_unsup.txt").unlink()
    with pytest.raises(FileNotFoundError, match="demo_unsup.txt"):
        devsets.training_texts(data)


def test_dev_sets_full_files_dedup_and_limit(tmp_path, monkeypatch):
    data = _training_dir(tmp_path)
    shared = tmp_path / "shared"
    (shared / "stsb").mkdir(parents=True)
    (shared / "sick").mkdir()
    stsb = [f'g\tf\t2012\t{i}\t{i % 5}.0\tSentence {i}.\tOther "{i}" here.' for i in range(10)]
    stsb[3] = "g\tf\t2012\t3\t2.0\tA MAN is playing a guitar\tx"  # overlaps training: dropped
    stsb += ["g\tf\t2012\tbad\tnot-a-score\ta\tb", "too\tfew", "g\tf\t2012\t11\t1.0\tlast\tone\textra\tcolumns"]
    (shared / "stsb" / "sts-dev.csv").write_text("\n".join(stsb) + "\n")
    header = "pair_ID\tsentence_A\tsentence_B\tentailment_label\trelatedness_score\tSemEval_set"
    sick = [f"{i}\tA {i}\tB {i}\tNEUTRAL\t{1 + i % 4}.0\t{'TRIAL' if i % 2 else 'TRAIN'}" for i in range(8)]
    (shared / "sick" / "SICK_train_trial.txt").write_text("\n".join([header, *sick]) + "\n")
    monkeypatch.delenv(devsets.SHARED_ENV, raising=False)
    stsb_dev, sick_trial = devsets.load_dev_sets(["stsb-dev", "sick-trial"], shared, data)
    assert (stsb_dev.kind, stsb_dev.total, stsb_dev.dropped, len(stsb_dev.pairs)) == ("full", 11, 1, 10)
    assert stsb_dev.pairs[2] == Pair("Sentence 2.", 'Other "2" here.', 2.0)  # QUOTE_NONE keeps quotes
    assert stsb_dev.pairs[-1] == Pair("last", "one", 1.0)  # extra columns ignored
    assert [p.a for p in sick_trial.pairs] == ["A 1", "A 3", "A 5", "A 7"] and sick_trial.dropped == 0
    (thin,) = devsets.load_dev_sets(["stsb-dev"], shared, data, limit=4)
    assert [p.a for p in thin.pairs] == ["Sentence 0.", "Sentence 4.", "Sentence 7.", "last"]  # evenly spaced
    assert thin.digest != stsb_dev.digest and thin.info()["pairs_kept"] == 10


def test_dev_sets_fall_back_to_shipped_samples(tmp_path, monkeypatch):
    monkeypatch.delenv(devsets.SHARED_ENV, raising=False)
    monkeypatch.setattr(devsets, "DEFAULT_SHARED", tmp_path / "absent")
    stsb_dev, sick_trial = devsets.load_dev_sets(["stsb-dev", "sick-trial"])
    assert stsb_dev.kind == sick_trial.kind == "sample"
    assert stsb_dev.source.endswith("stsb_dev_sample.tsv") and sick_trial.source.endswith("sick_trial_sample.tsv")
    with pytest.raises(FileNotFoundError, match="lacks stsb/sts-dev.csv"):
        devsets.load_dev_sets(["stsb-dev"], shared=tmp_path)  # asked for explicitly: no silent fallback
    monkeypatch.setenv(devsets.SHARED_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=devsets.SHARED_ENV):
        devsets.load_dev_sets(["stsb-dev"])
    with pytest.raises(ValueError, match="choose from"):
        devsets.parse_dataset_names("stsb-dev,mnli")


def test_shipped_dev_samples_hold_no_training_sentence():
    """The issue's complaint: 11 sentences of data/stsb_dev_sample.tsv occurred in training."""
    texts = devsets.training_texts(REPO / "data")
    stsb = devsets.read_stsb(REPO / "data" / "stsb_dev_sample.tsv")
    sick = devsets.read_sick_trial(REPO / "data" / "sick_trial_sample.tsv")
    assert len(stsb) == len(sick) == 200
    assert dedup_pairs(stsb, texts)[1] == 0 and dedup_pairs(sick, texts)[1] == 0
    assert dedup_pairs([("x", "A man is playing a guitar.", 1.0)], texts)[1] == 1  # the example is training


@pytest.mark.skipif(not (devsets.DEFAULT_SHARED / "stsb" / "sts-dev.csv").is_file(), reason="no ../shared/data")
def test_full_dev_sets_keep_enough_pairs():
    stsb_dev, sick_trial = devsets.load_dev_sets(["stsb-dev", "sick-trial"], devsets.DEFAULT_SHARED)
    assert (stsb_dev.total, stsb_dev.dropped, len(stsb_dev.pairs)) == (1500, 87, 1413)
    assert (sick_trial.total, sick_trial.dropped, len(sick_trial.pairs)) == (495, 126, 369)


def test_model_specs_add_the_base_under_each_other_training_prompt(tmp_path):
    from grace_rl.prompts import DEFAULT_INSTRUCTION

    def run(name, instruction=None):
        path = tmp_path / name
        path.mkdir()
        meta = {"max_rationale_tokens": 8} | ({"instruction": instruction} if instruction else {})
        (path / "grace_config.json").write_text(json.dumps(meta))
        return path

    plain, same = run("plain"), run("same", DEFAULT_INSTRUCTION)
    assert [s.label for s in model_specs("m", [plain, same])] == ["base", "plain", "same"]
    a, a2, b = run("a", "Paraphrase."), run("a2", "Paraphrase."), run("b", "Summarise.")
    specs = model_specs("m", [plain, a])
    assert [(s.label, s.role, s.path, s.instruction) for s in specs[:2]] == [
        ("base", "base", "m", None),
        ("base+prompt", "base", "m", "Paraphrase."),
    ]
    specs = model_specs("m", [a, a2, b])
    assert [(s.label, s.instruction) for s in specs if s.role == "base"] == [
        ("base", None),
        ("base+prompt1", "Paraphrase."),
        ("base+prompt2", "Summarise."),
    ]
    # `--instruction`: extra prompts join after the runs' own, each once, the default never twice.
    specs = model_specs("m", [a], instructions=["Paraphrase.", "Summarise.", DEFAULT_INSTRUCTION])
    assert [(s.label, s.instruction) for s in specs if s.role == "base"] == [
        ("base", None),
        ("base+prompt1", "Paraphrase."),
        ("base+prompt2", "Summarise."),
    ]
    assert [(s.label, s.path, s.instruction) for s in model_specs("m", [], instructions=["Summarise."])] == [
        ("base", "m", None),
        ("base+prompt", "m", "Summarise."),
    ]
    with pytest.raises(ValueError, match="--instruction: empty"):
        model_specs("m", [], instructions=[" "])
    assert cache_key("m", "d", [0], "Paraphrase.") != cache_key("m", "d", [0])
    assert "instruction" not in cache_key("m", "d", [0])  # keys of earlier sweeps are unchanged


def test_headline_bar_is_the_best_point_over_every_base_variant():
    gold = np.arange(10.0)
    rng = np.random.default_rng(1)

    def point(budget, noise, model):
        cos = gold + rng.normal(scale=noise, size=10)
        return {"budget": budget, "spearman": spearman(cos, gold), "cosines": cos.tolist(), "model": model}

    base = [point(0, 6.0, "base"), point(8, 3.0, "base"), point(0, 5.0, "base+prompt"), point(8, 0.5, "base+prompt")]
    trained = [point(8, 0.0, "run")]
    h = headline(trained, base, gold, 8, ProtocolSettings(n_boot=100))
    assert (h["base_model"], h["base_best_budget"]) == ("base+prompt", 8)
    assert h["base_spearman"] == round(max(p["spearman"] for p in base), 2)
    tie = [dict(base[1], model="base"), dict(base[1], model="base+prompt")]
    assert headline(trained, tie, gold, 8, ProtocolSettings(n_boot=10))["base_model"] == "base"  # first on a tie


def test_a_frozen_embedder_run_has_its_own_sweep_key(tmp_path):
    """Sweeps of frozen-embedder runs cached before the fix pooled the policy's own states: their key now names the
    embedder, so such a sweep is recomputed; other runs' keys (and cached sweeps) are unchanged."""
    plain, frozen = tmp_path / "plain", tmp_path / "frozen"
    for run, meta in ((plain, {"max_rationale_tokens": 32}), (frozen, {"reward_embedder": "frozen"})):
        run.mkdir()
        (run / "grace_config.json").write_text(json.dumps(meta), encoding="utf-8")
    assert embedded_by(plain) == {} and embedded_by(tmp_path / "missing") == {}
    assert embedded_by(frozen) == {"embedded_by": "frozen"}
    old = cache_key(frozen, "digest", [0, 32])
    save_sweep(tmp_path / "cache", {"key": old, "points": [], "seconds": 1.0})
    assert load_sweep(tmp_path / "cache", old) is not None
    assert load_sweep(tmp_path / "cache", old | embedded_by(frozen)) is None
