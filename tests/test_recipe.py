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


@pytest.mark.parametrize("override, message", [
    ("bench.threads=[1, two, 2.5]", "bench.threads[1] = 'two': expected an integer"),
    ("export.targets=[tflite:int4]", "must be one of onnx:fp32, onnx:int8, onnx:int8_tensorrt, tflite:fp32, tflite:fp16, tflite:int8. "
                                     "Did you mean 'tflite:int8'?"),
    ("bench.runtimes=[onnxrutime]", "Did you mean 'onnxruntime'?"),
    ("data.size=[28]", "data.size = [28]: expected 2 values"),
    ("train.augment=[hflip, flip]", "train.augment[1] = 'flip': must be one of hflip, crop, specaugment"),
    ("bench.threads=[0]", "bench.threads[0] = 0: must be between 1 and 1024"),
    ("train.lr=fast", "train.lr = 'fast': expected a number"),
])
@pytest.mark.parametrize("checker", ["pydantic", "standard library"])
def test_mistakes_inside_lists_and_choices_are_refused_before_any_work(override, message, checker, monkeypatch):
    if checker == "standard library":  # the device side's checker applies the same rules
        import builtins

        real = builtins.__import__

        def no_schema(name, *args, **kwargs):
            if name in ("pydantic", "edgekit.schema"):
                raise ImportError("no pydantic here")
            return real(name, *args, **kwargs)

        monkeypatch.setattr(builtins, "__import__", no_schema)
        assert recipe._schema_validator() is None  # as on a device: this really is the other checker
    with pytest.raises(ConfigError) as err:
        recipe.load(RECIPES / "digits_resnet8.yaml", [override])
    assert message in str(err.value) and str(err.value).startswith(str(RECIPES / "digits_resnet8.yaml"))


def test_numbers_as_people_write_them(tmp_path):
    p = tmp_path / "r.yaml"
    raw = "schema: 1\ndata: {name: digits}\ntrain:\n  lr: 1e-3\n  weight_decay: 5e-4\n  epochs: 1_000\n"
    p.write_text(raw)
    import yaml

    assert isinstance(yaml.safe_load(raw)["train"]["lr"], str)  # YAML 1.1 reads 1e-3 as a string
    r = recipe.load(p)
    assert r.train.lr == 0.001 and r.train.weight_decay == 0.0005 and r.train.epochs == 1000


def test_the_recipe_format_is_a_json_schema_editors_can_use(tmp_path):
    from tests.conftest import edgekit

    proc = edgekit("schema", "recipe", "--out", str(tmp_path / "recipe.schema.json"))
    assert proc.returncode == 0, proc.stderr
    import json

    schema = json.loads((tmp_path / "recipe.schema.json").read_text())
    train = schema["$defs"]["TrainSpec"]["properties"]
    assert train["optimizer"]["enum"] == ["sgd", "adamw"] and train["lr"]["maximum"] == 10.0
    assert schema["$defs"]["TrainSpec"]["additionalProperties"] is False and "schema" in schema["properties"]


def test_a_shipped_recipe_loads_by_name_and_a_near_miss_names_the_closest():
    assert recipe.load("digits_resnet8").name == "digits_resnet8"
    assert recipe.load("digits_resnet8.yaml", ["train.epochs=1"]).train.epochs == 1
    with pytest.raises(ConfigError, match="recipe file not found.*Did you mean 'digits_resnet8'"):
        recipe.load("digits_resnet")
    with pytest.raises(ConfigError, match="recipe file not found"):
        recipe.load("some/where/digits_resnet8.yaml")  # a path is a path: never swapped for a shipped file
