"""A placeholder for the few torchvision names timm imports at module level (bench only, never shipped).

torchvision's PyPI wheels are built for the CUDA torch and fail to import beside the CPU build this project
pins ("operator torchvision::nms does not exist"); a newer torchvision pulls the multi-GB CUDA torch. timm's
model *definitions* need none of torchvision: only its data pipeline and two helper imports do. This package
gives those names, so ``pip install --no-deps timm`` builds and runs every model definition with the CPU torch.
Anything that would really need torchvision raises instead of pretending.
"""

__version__ = "0.0.0+edgekit.placeholder"
