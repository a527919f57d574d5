"""Recipes are validated data: wrong keys, types and values are rejected with file, key path and a hint."""

from __future__ import annotations

import pytest

from edgekit import recipe
from edgekit.errors import ConfigError

from .conftest import RECIPES


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_validates(path):
    r = recipe.load(path)
    assert r.schema == recipe.SCHEMA_VERSION
    assert r.name == path.stem


def test_set_overrides_are_typed_and_nested():
    r = recipe.load(RECIPES / "fashion_mnist_resnet8.yaml", ["train.epochs=2", "verify.budget=0.02",
                                                            "export.targets=[onnx:fp32]"])
    assert r.train.epochs == 2 and r.verify.budget == 0.02 and r.export.targets == ["onnx:fp32"]


def test_digest_changes_with_content():
    a = recipe.load(RECIPES / "digits_resnet8.yaml")
    b = recipe.load(RECIPES / "digits_resnet8.yaml", ["train.epochs=1"])
    assert a.digest() != b.digest()


@pytest.mark.parametrize("override, message", [
    ("train.epoch=3", "unknown key 'train.epoch'. Did you mean 'epochs'?"),
    ("trian.epochs=3", "unknown key 'trian'. Did you mean 'train'?"),
    ("train.epochs=three", "train.epochs = 'three': expected an integer"),
    ("train.device=cdua", "must be one of auto, cpu, cuda. Did you mean 'cuda'?"),
    ("prune.macs_ratio=2", "prune.macs_ratio = 2: must be between"),
    ("train.amp=maybe", "expected true or false"),
    ("export.targets=onnx", "expected a list"),
])
def test_bad_values_name_file_key_and_fix(override, message):
    with pytest.raises(ConfigError) as err:
        recipe.load(RECIPES / "digits_resnet8.yaml", [override])
    assert message in str(err.value)
    assert "digits_resnet8.yaml" in str(err.value)


def test_schema_version_is_required_and_checked(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("name: x\n")
    with pytest.raises(ConfigError, match="missing 'schema'"):
        recipe.load(p)
    p.write_text("schema: 99\n")
    with pytest.raises(ConfigError, match="schema 99 is not supported"):
        recipe.load(p)


def test_yaml_is_parsed_safely(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("schema: 1\nname: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        recipe.load(p)


def test_missing_file_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="recipe file not found"):
        recipe.load(tmp_path / "nope.yaml")
    p = tmp_path / "list.yaml"
    p.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        recipe.load(p)
