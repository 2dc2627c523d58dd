"""The built wheel: LICENSE inside, one top-level package, and installing it beside unrelated
distributions that own the names `topology`, `optimizer`, `k8s` and `policies` leaves both working.

Builds the wheel with pip (build isolation fetches the pinned setuptools from PyPI, or
pip's cache); the four look-alike distributions are wheels written here in tmp_path
and installed with --no-index. The fresh venv borrows this environment's third-party
packages (numpy, pydantic, ...) through a .pth line, so nothing else is downloaded.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLASHING = ("topology", "optimizer", "k8s", "policies")
pytestmark = pytest.mark.slow


def _pip(python: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = _pip(Path(sys.executable), "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT))
    assert done.returncode == 0, done.stderr[-2000:]
    [built] = out.glob("edgeplace-*.whl")
    return built


def test_wheel_carries_the_license_and_one_top_level_package(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        license_files = [n for n in names if n.endswith("/LICENSE") and ".dist-info/" in n]
        assert license_files, "LICENSE is not in the wheel"
        assert z.read(license_files[0]) == (ROOT / "LICENSE").read_bytes()
        metadata = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in metadata
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"edgeplace"}, tops


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def fake_wheel(folder: Path, name: str) -> Path:
    """A minimal, valid wheel of a distribution `name` whose top-level package is `name`."""
    files = {
        f"{name}/__init__.py": f'WHO = "the unrelated {name} distribution"\n'.encode(),
        f"{name}/core.py": b"def answer():\n    return 42\n",
        f"{name}-1.0.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode(),
        f"{name}-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: edgeplace-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [_record_line(p, d) for p, d in files.items()] + [f"{name}-1.0.dist-info/RECORD,,"]
    path = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for p, d in files.items():
            z.writestr(p, d)
        z.writestr(f"{name}-1.0.dist-info/RECORD", "\n".join(record) + "\n")
    return path


CHECK = textwrap.dedent("""
    import importlib, json, sys
    out = {}
    for name in %r:
        mod = importlib.import_module(name)
        out[name] = [mod.WHO, importlib.import_module(name + ".core").answer()]
    import edgeplace.k8s.mapping, edgeplace.optimizer.solve, edgeplace.policies.evaluate
    from edgeplace.topology.load import load_scenario
    from edgeplace.app import example_path
    sc = load_scenario(example_path("metro-de.yaml"))
    out["edgeplace"] = [edgeplace.topology.load.__file__, sc.n_nodes]
    print(json.dumps(out))
""")


def test_installs_beside_distributions_that_own_the_clashing_names(wheel, tmp_path):
    import json

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    # Third-party packages from this environment, after the venv's own site-packages (a plain path line:
    # the editable install's .pth hooks there are not run, so `edgeplace` comes from the wheel).
    (purelib / "zz_borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = [str(python), "-m", "pip"]
    assert subprocess.run([*pip, "--version"], capture_output=True, timeout=60).returncode == 0
    fakes = tmp_path / "fakes"
    fakes.mkdir()
    for name in CLASHING:
        fake_wheel(fakes, name)
    done = _pip(python, "install", "--no-index", "--find-links", str(fakes), *CLASHING)
    assert done.returncode == 0, done.stderr
    done = _pip(python, "install", "--no-index", "--no-deps", str(wheel))
    assert done.returncode == 0, done.stderr
    run = subprocess.run([str(python), "-c", CHECK % (CLASHING,)], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path, env={**os.environ, "PYTHONPATH": ""})
    assert run.returncode == 0, run.stderr[-3000:]
    seen = json.loads(run.stdout)
    for name in CLASHING:
        assert seen[name] == [f"the unrelated {name} distribution", 42]
    assert seen["edgeplace"][0].startswith(str(venv)) and seen["edgeplace"][1] > 0
    cli = subprocess.run([str(venv / "bin" / "edgeplace"), "validate", str(ROOT / "examples" / "metro-de.yaml")],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr
    # Removing edgeplace leaves the others' files in place.
    done = _pip(python, "uninstall", "--yes", "edgeplace")
    assert done.returncode == 0, done.stderr
    for name in CLASHING:
        assert (purelib / name / "core.py").is_file()
