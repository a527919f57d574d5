"""Only the names timm's data modules read at import time; using a transform raises."""

from . import functional  # noqa: F401
from .functional import InterpolationMode  # noqa: F401


def __getattr__(name):
    def unavailable(*args, **kwargs):
        raise NotImplementedError(f"torchvision.transforms.{name} is a placeholder (bench/timm_stub)")

    return type(name, (), {"__init__": unavailable})
