"""rollout.generate_patch: instance-level generate wrappers nest and are undone in order."""

import torch

from rollout.generate_patch import patched_generate


class _Model(torch.nn.Module):
    def generate(self, x):
        return [x]


def _appending(tag):
    def wrap(original):
        return lambda x: [*original(x), tag]

    return wrap


def test_patches_nest_and_restore_in_order():
    m = _Model()
    with patched_generate(m, _appending("outer")):
        assert m.generate(0) == [0, "outer"]
        with patched_generate(m, _appending("inner")):
            assert m.generate(0) == [0, "outer", "inner"]
        assert m.generate(0) == [0, "outer"]
    assert m.generate(0) == [0]
    assert "generate" not in vars(m)  # the class method is back, no instance attribute left


def test_restored_when_the_block_raises():
    m = _Model()
    try:
        with patched_generate(m, _appending("x")):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert m.generate(1) == [1]
