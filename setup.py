"""Build hook: the top-level devices/ and recipes/ folders go into the package as edgekit/_shipped/.

Everything else is in pyproject.toml. The folders stay where users and contributors look for them; the wheel
(and a wheel built from the sdist, which MANIFEST.in gives them to) carries a copy that edgekit.shipped reads.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class BuildWithShippedData(build_py):
    def run(self):
        super().run()
        for kind in ("devices", "recipes"):
            dst = Path(self.build_lib) / "edgekit" / "_shipped" / kind
            dst.mkdir(parents=True, exist_ok=True)
            for src in sorted((HERE / kind).glob("*.yaml")):
                shutil.copy2(src, dst / src.name)


setup(cmdclass={"build_py": BuildWithShippedData})
