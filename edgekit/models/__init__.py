"""Model registry and checkpoints that reload safely, pruned or not.

A checkpoint is a plain dict (``torch.load(weights_only=True)`` reads it): the registry name and
arguments of the model, the widths of every Conv/Linear/BatchNorm layer, and the state_dict. A
pruned model is rebuilt by creating the dense model and resizing the recorded layers, never by
unpickling a module.
"""

from __future__ import annotations

from pathlib import Path

from edgekit.errors import DataError, first_line, require
from edgekit.registry import Registry

MODELS = Registry("model")
MODELS.register("resnet8", "edgekit.models.resnet:resnet8")
MODELS.register("mobilenet_v1", "edgekit.models.mobilenet:mobilenet_v1")
MODELS.register("fc_autoencoder", "edgekit.models.autoencoder:fc_autoencoder")
MODELS.register("ds_cnn", "edgekit.models.kws:ds_cnn")
MODELS.register("gru_kws", "edgekit.models.kws:gru_kws")
MODELS.register("kwt", "edgekit.models.kws:kwt")
# The zoo of architectures users deploy; bench/zoo_matrix.py runs each through prune, ONNX, TFLite and parity.
MODELS.register("mobilenet_v2", "edgekit.models.zoo:mobilenet_v2")
MODELS.register("mobilenet_v3_small", "edgekit.models.zoo:mobilenet_v3_small")
MODELS.register("efficientnet_lite0", "edgekit.models.zoo:efficientnet_lite0")
MODELS.register("resnet18", "edgekit.models.zoo:resnet18")
MODELS.register("squeezenet", "edgekit.models.zoo:squeezenet")
MODELS.register("shufflenet_v2", "edgekit.models.zoo:shufflenet_v2")
MODELS.register("lstm_kws", "edgekit.models.zoo:lstm_kws")

CHECKPOINT_FORMAT = "edgekit-model/1"


def build(name: str, args: dict | None = None):
    """Create a registered model. Example: ``build("resnet8", {"in_channels": 1, "num_classes": 10})``."""
    factory = MODELS.get(name, where="model.name")
    try:
        return factory(**(args or {}))
    except (TypeError, ValueError) as exc:  # unknown or out-of-range model.args
        from edgekit.errors import ConfigError

        raise ConfigError(f"model.args for '{name}': {exc}") from None


def layer_widths(model) -> dict:
    """The shape-defining attributes of each Conv2d, Linear and BatchNorm2d (what pruning changes)."""
    nn = require("torch.nn", extra="train", why="checkpoints")
    widths = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            widths[name] = {"in": m.in_channels, "out": m.out_channels, "groups": m.groups}
        elif isinstance(m, nn.Linear):
            widths[name] = {"in": m.in_features, "out": m.out_features}
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            widths[name] = {"out": m.num_features}
    return widths


def save_checkpoint(path: str | Path, model, *, name: str, args: dict, extra: dict | None = None) -> Path:
    """Write model weights and widths atomically (a dict of tensors and plain values, no pickled module)."""
    torch = require("torch", extra="train", why="checkpoints")
    from edgekit.rundir import atomic_path

    payload = {"format": CHECKPOINT_FORMAT, "model": name, "args": dict(args), "widths": layer_widths(model),
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "extra": extra or {}}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def read_checkpoint(path: str | Path) -> dict:
    """Load a checkpoint dict with ``weights_only=True``; unreadable files raise DataError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found")
    payload = load_weights_only(path, what="checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise DataError(f"{path}: not an edgekit checkpoint (expected format {CHECKPOINT_FORMAT})")
    return payload


def load_weights_only(path: Path, *, what: str):
    """``torch.load(weights_only=True)``; a corrupt, truncated or code-carrying file raises one DataError.

    torch's own message advises retrying with ``weights_only=False``: for an untrusted file that would run
    its code, so edgekit says what is wrong instead.
    """
    import pickle
    import warnings

    torch = require("torch", extra="train", why="checkpoints")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Detected pickle protocol 4" on foreign files
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        reason = "corrupt, truncated, or it holds pickled objects other than tensors, which edgekit never loads"
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        reason = f"{type(exc).__name__}: {first_line(exc)[:160]}"
    raise DataError(f"{path}: unreadable {what} ({reason})")


def load_checkpoint(path: str | Path):
    """Rebuild the model a checkpoint describes, resized to its recorded widths, with its weights."""
    payload = read_checkpoint(path)
    model = build(payload["model"], payload["args"])
    resize_to(model, payload["widths"])
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        raise DataError(f"{path}: weights do not fit model '{payload['model']}': {first_line(exc)}") from None
    return model


def resize_to(model, widths: dict) -> None:
    """Replace each recorded layer whose width differs by a fresh layer of the recorded width."""
    nn = require("torch.nn", extra="train", why="checkpoints")
    for name, w in widths.items():
        try:
            m = model.get_submodule(name)
        except AttributeError:
            raise DataError(f"checkpoint layer '{name}' does not exist in the model") from None
        if isinstance(m, nn.Conv2d):
            if (m.in_channels, m.out_channels, m.groups) == (w["in"], w["out"], w["groups"]):
                continue
            new = nn.Conv2d(w["in"], w["out"], m.kernel_size, m.stride, m.padding, m.dilation, w["groups"],
                            bias=m.bias is not None, padding_mode=m.padding_mode)
        elif isinstance(m, nn.Linear):
            if (m.in_features, m.out_features) == (w["in"], w["out"]):
                continue
            new = nn.Linear(w["in"], w["out"], bias=m.bias is not None)
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            if m.num_features == w["out"]:
                continue
            new = type(m)(w["out"], eps=m.eps, momentum=m.momentum, affine=m.affine,
                          track_running_stats=m.track_running_stats)
        else:
            continue
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, new)
