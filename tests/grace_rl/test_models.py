from __future__ import annotations

import pytest

from grace_rl import models


def test_local_dir_resolves_and_loads(tiny_model_dir):
    assert models.resolve_model_path(str(tiny_model_dir)) == tiny_model_dir.resolve()
    model = models.load_model(tiny_model_dir)
    tok = models.load_tokenizer(tiny_model_dir)
    assert model.config.hidden_size == 32 and tok.pad_token is not None


def test_missing_or_non_model_dirs_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloads"):
        models.resolve_model_path("HuggingFaceTB/SmolLM2-135M-Instruct")
    with pytest.raises(FileNotFoundError, match="config.json"):
        models.resolve_model_path(str(tmp_path))


def test_default_gguf_is_found_in_the_wheel():
    path = models.default_gguf_path()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000


def test_cache_root_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path))
    assert models.cache_root() == tmp_path
