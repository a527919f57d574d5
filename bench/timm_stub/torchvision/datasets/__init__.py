def __getattr__(name):
    def unavailable(*args, **kwargs):
        raise NotImplementedError(f"torchvision.datasets.{name} is a placeholder (bench/timm_stub)")

    return type(name, (), {"__init__": unavailable})
