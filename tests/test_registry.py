from __future__ import annotations

import pytest

from edgekit.errors import ConfigError
from edgekit.registry import Registry


def test_lazy_entries_resolve_on_first_use():
    r = Registry("thing")
    r.register("join", "os.path:join")
    assert r.get("join")("a", "b") == "a/b"


def test_unknown_name_lists_choices_and_a_close_match():
    r = Registry("model")
    r.register("resnet8", "x:y")
    r.register("dscnn", "x:z")
    with pytest.raises(ConfigError) as err:
        r.get("resnt8", where="model.name")
    assert "model.name: unknown model 'resnt8'. Did you mean 'resnet8'?" in str(err.value)
    assert "Choices: dscnn, resnet8" in str(err.value)
