import enum


class InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


def __getattr__(name):
    def unavailable(*args, **kwargs):
        raise NotImplementedError(f"torchvision.transforms.functional.{name} is a placeholder (bench/timm_stub)")

    return unavailable
