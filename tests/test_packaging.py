"""The built wheel installs one import name, ``lesionlite``, with its model bundles and web files."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import numpy
import PIL
import pytest

from conftest import ROOT

pytest.importorskip("setuptools", minversion="64", reason="building the wheel offline needs setuptools>=64")
pytest.importorskip("wheel", reason="building the wheel offline needs the wheel package")

NOT_SOURCE = shutil.ignore_patterns(".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                    "runs", "weights")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built offline from a copy of the checkout (the build leaves ``build/`` behind)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = shutil.copytree(ROOT, tmp / "src", ignore=NOT_SOURCE)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "-w", str(tmp / "dist"), str(src)], check=True, capture_output=True, timeout=120)
    return next((tmp / "dist").glob("lesionlite-*.whl"))


def test_the_wheel_has_one_top_level_name(wheel):
    with zipfile.ZipFile(wheel) as whl:
        top_level = next(n for n in whl.namelist() if n.endswith(".dist-info/top_level.txt"))
        assert whl.read(top_level).decode().split() == ["lesionlite"]
        assert {n.split("/")[0] for n in whl.namelist() if not n.split("/")[0].endswith(".dist-info")} == {"lesionlite"}


def test_the_installed_wheel_imports_with_its_data(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True, timeout=120)
    code = ("import lesionlite, lesionlite.edge.classifier, importlib.util\n"
            "from lesionlite.edge.bundle import default_bundle_path, models_dir\n"
            "from lesionlite.edge.serve import cli\n"
            "assert (default_bundle_path() / 'model.tflite').is_file()\n"
            "assert next((models_dir() / 'reference').glob('*.tflite'))\n"
            "assert (__import__('pathlib').Path(cli.__file__).parent / 'templates' / 'page.html').is_file()\n"
            "assert not any(importlib.util.find_spec(n) for n in ('edge', 'convert', 'training', 'models'))\n"
            "print(lesionlite.__file__)\n")
    # numpy and Pillow from this interpreter's site-packages; lesionlite only from the new venv
    deps = os.pathsep.join(str(Path(m.__file__).parents[1]) for m in (numpy, PIL))
    proc = subprocess.run([str(python), "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONNOUSERSITE": "1", "PYTHONPATH": deps})
    assert proc.returncode == 0, proc.stderr
    assert Path(proc.stdout.strip()).is_relative_to(env_dir), proc.stdout
