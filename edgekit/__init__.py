"""edgekit: take a neural network from training onto a small device, with measured numbers.

Importing this package is cheap and never imports torch: the device side (runtimes, bundles,
demos, ``edgekit bench``) must run where only numpy and one runtime are installed.
"""

from __future__ import annotations

__version__ = "0.1.0"
