"""Security defaults: no remote code unless asked, safetensors only for the weights we read, no foreign pickles."""

from __future__ import annotations

import json
import shutil

import pytest

from grace_rl.encoder import GraceEncoder
from grace_rl.models import check_model_dir
from grace_rl.train import parse_args

pytestmark = pytest.mark.faults


def test_trust_remote_code_is_off_unless_asked(tmp_path):
    _, args, _ = parse_args(["--output_dir", str(tmp_path / "run"), "--use_cpu", "true", "--bf16", "false"])
    assert args.trust_remote_code is False
    _, args, _ = parse_args(
        ["--output_dir", str(tmp_path / "run"), "--use_cpu", "true", "--trust_remote_code", "true"]
    )
    assert args.trust_remote_code is True


def test_custom_code_model_dir_is_accepted_only_when_trusted(tmp_path, tiny_model_dir):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    config = json.loads((model / "config.json").read_text())
    config.update(model_type="my_secret_arch", auto_map={"AutoModelForCausalLM": "modeling_secret.SecretLM"})
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="trust_remote_code: true"):
        check_model_dir(model)
    check_model_dir(model, trust_remote_code=True)  # asked for: the files pass the check (loading is the user's call)


def test_lora_adapter_with_pickle_weights_only_is_refused(tmp_path, tiny_model_dir, tally):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "base_model_name_or_path": str(tiny_model_dir), "r": 4})
    )
    (adapter / "adapter_model.bin").write_bytes(b"a pickle that must never be loaded")
    with pytest.raises(ValueError) as info:
        GraceEncoder.from_pretrained(str(adapter))
    message = str(info.value)
    assert "adapter" in message and "adapter_model.bin" in message and "safe_serialization=True" in message
    tally.bad_input()
