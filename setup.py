"""Ship modules.d/, templates/, arch/ and packaging/ inside the wheel.

They live at the top of the checkout, where packagers and module authors look for them;
build_py copies them under mkkdumprd/data/ so an installed wheel finds them the same way
(mkkdumprd.resources looks there first, then in the checkout).
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

DATA_DIRS = ("modules.d", "templates", "arch", "packaging")


class BuildWithData(build_py):
    def run(self) -> None:
        super().run()
        top = Path(__file__).resolve().parent
        dest = Path(self.build_lib) / "mkkdumprd" / "data"
        for name in DATA_DIRS:
            target = dest / name
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(
                top / name, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )


setup(cmdclass={"build_py": BuildWithData})
