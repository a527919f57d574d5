"""Recipes: YAML files validated into typed, frozen dataclasses.

A recipe is data (``yaml.safe_load``, never ``eval``). Every key is checked against the dataclasses
below: unknown keys, wrong types and out-of-range values are rejected with the file, the key path,
the bad value and a close match. ``--set a.b=value`` overrides are parsed as YAML scalars and
applied before validation, so they get the same checks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgekit.errors import ConfigError, close_matches

SCHEMA_VERSION = 1
AUGMENTATIONS = ("hflip", "crop", "specaugment")  # train.augment names; edgekit.train.batches.Augment applies them


EXPORT_TARGETS = ("onnx:fp32", "onnx:int8", "onnx:int8_tensorrt", "tflite:fp32", "tflite:fp16",
                  "tflite:int8")  # edgekit.export.EXPORTERS
RUNTIME_NAMES = ("onnxruntime", "litert", "tflite-runtime")  # edgekit.device.runtime.RUNTIMES


def _check(lo: float | None = None, hi: float | None = None, choices: tuple | None = None,
           length: int | None = None) -> dict:
    """A field's rules: a range (for a list: of each element), fixed choices (each element's), a list length."""
    return {"lo": lo, "hi": hi, "choices": choices, "length": length}


@dataclass(frozen=True)
class DataSpec:
    name: str = "fashion_mnist"  # registry name in edgekit.data.DATASETS: fashion_mnist, digits, cifar10, ...
    root: str | None = None  # folder with the data set's files; None = the data set's default place
    val_fraction: float = field(default=0.1, metadata=_check(0.0, 0.5))  # of train, for model selection
    limit_train: int | None = field(default=None, metadata=_check(1))  # cap on training samples (fast runs)
    limit_test: int | None = field(default=None, metadata=_check(1))  # cap on held-out test samples
    seed: int = 0  # split and shuffling seed
    size: list[int] | None = field(default=None, metadata=_check(1, 65_536, length=2))  # [H, W] pixels images
    # are resized to (image folders); None = the data set's own
    channels: int | None = field(default=None, metadata=_check(1, 4))  # 1 = grayscale, 3 = RGB; None = data set's
    test_fraction: float = field(default=0.1, metadata=_check(0.0, 0.9))  # held out when a folder has no test/
    workers: int = field(default=4, metadata=_check(1, 256))  # threads decoding image files (OpenCV frees the GIL)


@dataclass(frozen=True)
class ModelSpec:
    name: str = "resnet8"  # registry name in edgekit.models.MODELS
    args: dict = field(default_factory=dict)  # keyword arguments of the model factory


@dataclass(frozen=True)
class TrainSpec:
    epochs: int = field(default=4, metadata=_check(1, 10_000))
    batch_size: int = field(default=128, metadata=_check(1, 65_536))
    lr: float = field(default=0.05, metadata=_check(0.0, 10.0))  # peak learning rate
    optimizer: str = field(default="sgd", metadata=_check(choices=("sgd", "adamw")))  # sgd = Nesterov momentum
    momentum: float = field(default=0.9, metadata=_check(0.0, 1.0))  # SGD momentum; AdamW's beta1
    weight_decay: float = field(default=5e-4, metadata=_check(0.0, 1.0))
    label_smoothing: float = field(default=0.0, metadata=_check(0.0, 0.5))
    schedule: str = field(default="onecycle", metadata=_check(choices=("onecycle", "cosine", "step")))  # lr per step
    warmup_epochs: float = field(default=0.0, metadata=_check(0.0, 1000.0))  # linear warm-up (onecycle: 0 = 25 %)
    step_epochs: int = field(default=30, metadata=_check(1, 10_000))  # schedule=step: epochs between lr drops
    step_gamma: float = field(default=0.1, metadata=_check(0.0, 1.0))  # schedule=step: lr factor at each drop
    augment: list[str] = field(default_factory=list, metadata=_check(choices=AUGMENTATIONS))  # per batch; [] = none
    crop_padding: int = field(default=4, metadata=_check(0, 64))  # pixels of zero padding around a random crop
    ema: float = field(default=0.0, metadata=_check(0.0, 0.99999))  # weight averaging decay per step; 0 = off
    device: str = field(default="auto", metadata=_check(choices=("auto", "cpu", "cuda")))
    amp: bool = True  # mixed precision, used only on CUDA
    amp_dtype: str = field(default="auto", metadata=_check(choices=("auto", "bf16", "fp16")))  # auto = bf16 if native
    compile: bool = False  # torch.compile the model (pays off on GPUs; the first steps wait for compilation)
    prefetch: int = field(default=2, metadata=_check(0, 64))  # CUDA: batches staged ahead in pinned memory
    tensorboard: bool = False  # also write TensorBoard scalars to tb/ (needs the tensorboard package)
    seed: int = 0
    threads: int | None = field(default=None, metadata=_check(1, 1024))  # torch CPU threads; None = all cores


@dataclass(frozen=True)
class PruneSpec:
    enabled: bool = True
    macs_ratio: float = field(default=0.5, metadata=_check(0.05, 1.0))  # target MACs of the pruned / dense model
    round_to: int = field(default=8, metadata=_check(1, 128))  # channel counts that vector units fill
    importance: str = field(default="l2", metadata=_check(choices=("l1", "l2", "random")))
    max_steps: int = field(default=40, metadata=_check(1, 1000))  # iterative pruning steps at most


@dataclass(frozen=True)
class DistillSpec:
    enabled: bool = True
    epochs: int = field(default=3, metadata=_check(0, 10_000))
    lr: float = field(default=0.02, metadata=_check(0.0, 10.0))
    temperature: float = field(default=4.0, metadata=_check(0.1, 100.0))  # softens both logit sets
    alpha: float = field(default=0.7, metadata=_check(0.0, 1.0))  # weight of the KD loss vs the label loss
    teachers: int = field(default=1, metadata=_check(1, 16))  # models averaged as the teacher (seeds train.seed+i)
    optimizer: str = field(default="sgd", metadata=_check(choices=("sgd", "adamw")))  # as train.optimizer


@dataclass(frozen=True)
class ExportSpec:
    targets: list[str] = field(default_factory=lambda: ["onnx:fp32", "onnx:int8", "tflite:fp32", "tflite:fp16",
                                                        "tflite:int8"],
                               metadata=_check(choices=EXPORT_TARGETS))  # format:precision pairs
    calib_samples: int = field(default=512, metadata=_check(1, 1_000_000))  # training samples used to calibrate
    baseline: bool = True  # also export the dense fp32 model as ONNX, for side-by-side numbers


@dataclass(frozen=True)
class VerifySpec:
    budget: float = field(default=0.01, metadata=_check(0.0, 1.0))  # max accuracy drop vs the dense fp32 model
    fp32_tolerance: float = field(default=1e-3, metadata=_check(0.0, 1e3))  # max abs logit diff for fp32 artifacts


@dataclass(frozen=True)
class BenchSpec:
    threads: list[int] = field(default_factory=lambda: [1, 2], metadata=_check(1, 1024))  # thread counts timed
    warmup: int = field(default=20, metadata=_check(0, 100_000))
    iterations: int = field(default=200, metadata=_check(1, 1_000_000))
    runtimes: list[str] | None = field(default=None, metadata=_check(choices=RUNTIME_NAMES))  # None = every
    # installed runtime that supports the format


@dataclass(frozen=True)
class Recipe:
    schema: int
    name: str
    description: str = ""
    task: str = field(default="classification", metadata=_check(choices=("classification", "anomaly")))
    data: DataSpec = field(default_factory=DataSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    prune: PruneSpec = field(default_factory=PruneSpec)
    distill: DistillSpec = field(default_factory=DistillSpec)
    export: ExportSpec = field(default_factory=ExportSpec)
    verify: VerifySpec = field(default_factory=VerifySpec)
    bench: BenchSpec = field(default_factory=BenchSpec)
    targets: list[str] = field(default_factory=list)  # device profiles the run's bundle is proven on (arm64: qemu)
    source: str = ""  # the file it came from (filled by load)

    def to_dict(self) -> dict:
        return content_dict(self)

    def digest(self) -> str:
        """A short hash of the validated content, for manifests and run folders."""
        return content_digest(self)


def content_dict(spec) -> dict:
    """A validated config dataclass as a plain dict, without the file it was read from."""
    d = dataclasses.asdict(spec)
    d.pop("source", None)
    return d


def content_digest(spec) -> str:
    """A short sha256 of a validated config's content: equal configs hash equal, whatever file they came from."""
    return hashlib.sha256(json.dumps(content_dict(spec), sort_keys=True).encode()).hexdigest()[:16]


def resolve(path: str | Path) -> Path:
    """The recipe file ``path`` names: the file itself when it exists, else the shipped recipe of that name.

    Raises:
        ConfigError: neither, with the closest shipped name and where the list is.
    """
    from edgekit import shipped

    p = Path(path)
    if p.is_file():
        return p
    found = shipped.find_recipe(str(path))
    if found is not None:
        return found
    hint = close_matches(p.stem, shipped.names("recipes")) if "/" not in str(path) else ""
    raise ConfigError(f"{p}: recipe file not found, nor a recipe of that name that comes with edgekit "
                      f"(`edgekit recipes` lists them).{hint}")


def _schema_validator():
    """pydantic's checker (edgekit.schema) where pydantic is installed, the host; None on a device, where the
    standard-library checker :func:`from_dict` applies the same rules."""
    try:
        import pydantic  # noqa: F401
    except ImportError:
        return None
    from edgekit.schema import validate

    return validate


def json_schema() -> dict:
    """The recipe format as a JSON Schema (``edgekit schema recipe``); needs pydantic, the host's."""
    from edgekit.schema import json_schema as of

    return of(Recipe, f"edgekit recipe (schema {SCHEMA_VERSION})")


def load(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read, override and validate a recipe.

    Args:
        path: the YAML file, or the name of a recipe that comes with edgekit (``kws_dscnn``).
        overrides: ``"key.path=value"`` strings; values are parsed as YAML scalars.

    Returns:
        The validated Recipe.

    Raises:
        ConfigError: naming the file, the key path, the bad value and close matches.

    Example:
        >>> r = load("fashion_mnist_resnet8", ["train.epochs=1"])
    """
    path = resolve(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: is empty" if raw is None else f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    for item in overrides:
        _apply_override(raw, item, path)
    if "schema" not in raw:
        raise ConfigError(f"{path}: missing 'schema' (this edgekit reads schema {SCHEMA_VERSION})")
    if raw["schema"] != SCHEMA_VERSION:
        raise ConfigError(f"{path}: schema {raw['schema']!r} is not supported (this edgekit reads {SCHEMA_VERSION})")
    raw.setdefault("name", path.stem)
    validate = _schema_validator()
    recipe = validate(Recipe, raw, str(path)) if validate else from_dict(Recipe, raw, str(path), "")
    return dataclasses.replace(recipe, source=str(path))


def _apply_override(raw: dict, item: str, path: Path) -> None:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected key.path=value")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    node = raw
    parts = key.strip().split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{path}: --set {key}: '{part}' is not a section")
        node = child
    node[parts[-1]] = parsed


def from_dict(cls: type, raw: Any, file: str, where: str) -> Any:
    """Build dataclass ``cls`` from ``raw``, checking keys, types and ranges; errors name ``file`` and ``where``."""
    at = f"{file}: {where or '<top>'}"
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{at}: expected a mapping, got {type(raw).__name__} {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    for key in raw:
        if key not in fields:
            raise ConfigError(f"{file}: unknown key '{_join(where, key)}'.{close_matches(key, fields)}"
                              f" Valid keys: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, f in fields.items():
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{file}: missing required key '{_join(where, name)}'")
            continue
        values[name] = _coerce(hints[name], raw[name], file, _join(where, name), f.metadata)
    return cls(**values)


def _number(value: Any, kind: type) -> Any:
    """``value`` as an int or a float, taking numbers as people write them (YAML 1.1 reads ``1e-3`` as a string);
    None when it is not one (booleans are not numbers)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.replace("_", "")) if kind is float else int(value.replace("_", ""), 10)
        except ValueError:
            return None
    if kind is int:
        return value if isinstance(value, int) else None
    return float(value) if isinstance(value, int | float) and value == value and abs(value) != float("inf") else None


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _coerce(tp: Any, value: Any, file: str, where: str, meta: typing.Mapping) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        tp = args[0]
        origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, file, where)
    bad = f"{file}: {where} = {value!r}"
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{bad}: expected true or false")
    elif tp is int:
        value = _number(value, int)
        if value is None:
            raise ConfigError(f"{bad}: expected an integer")
    elif tp is float:
        value = _number(value, float)
        if value is None:
            raise ConfigError(f"{bad}: expected a number")
    elif tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{bad}: expected a string")
    elif tp is list or origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{bad}: expected a list")
        length = meta.get("length") if meta else None
        if length is not None and len(value) != length:
            raise ConfigError(f"{bad}: expected {length} values")
        (item,) = typing.get_args(tp) or (None,)
        if item in (int, float, str, bool):
            item_meta = {k: v for k, v in (meta or {}).items() if k in ("lo", "hi")}
            value = [_coerce(item, v, file, f"{where}[{i}]", item_meta) for i, v in enumerate(value)]
            if not (meta or {}).get("choices"):
                return value
    elif tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{bad}: expected a mapping")
    choices = meta.get("choices") if meta else None
    if choices and isinstance(value, list):  # a list of names: each must be a valid choice
        for i, item in enumerate(value):
            if item not in choices:
                raise ConfigError(f"{file}: {where}[{i}] = {item!r}: must be one of {', '.join(map(str, choices))}."
                                  f"{close_matches(item, choices)}")
    elif choices and value not in choices:
        raise ConfigError(f"{bad}: must be one of {', '.join(map(str, choices))}.{close_matches(value, choices)}")
    lo, hi = (meta.get("lo"), meta.get("hi")) if meta else (None, None)
    if lo is not None and value < lo or hi is not None and value > hi:
        raise ConfigError(f"{bad}: must be between {lo} and {hi}")
    return value
