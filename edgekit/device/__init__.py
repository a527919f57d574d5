"""The device side: everything that runs on a Raspberry Pi, a Jetson or a phone's host without torch.

A bundle is opened, checked (checksums, signature), run (onnxruntime or LiteRT behind one session interface),
timed and compared with its golden pairs here, and the camera and microphone demos run here. The rule is a
folder boundary: modules under ``edgekit/device/`` import numpy, the runtimes, ``cryptography`` and each other,
plus the shared basics at the package root (``edgekit.errors``, ``edgekit.log``, ``edgekit.quiet``,
``edgekit.registry``) and never torch, TensorFlow or JAX. ``tests/test_house.py`` checks the imports and
``tests/test_bundle.py`` imports every module here in the torch-free environment ``make device-venv`` builds.
Everything else in ``edgekit/`` is the host side and may import torch (lazily, where a device reaches it too).
"""
