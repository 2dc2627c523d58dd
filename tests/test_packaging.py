"""The install ships every package: pyproject's explicit list against the tree."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOP = ("topology", "policies", "optimizer", "k8s", "edgeplace")


def _listed() -> set[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return set(config["packages"])


def test_every_package_in_the_tree_is_listed_in_pyproject():
    # A package missing from the list installs fine in editable mode but is absent from a wheel.
    found = {".".join(p.parent.relative_to(ROOT).parts) for top in TOP for p in (ROOT / top).rglob("__init__.py")
             if "e2e" not in p.parts}
    missing = found - _listed()
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"


def test_every_listed_package_exists():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapped = config.get("package-dir", {})
    for name in _listed():
        folder = ROOT / mapped.get(name, name.replace(".", "/"))
        assert (folder / "__init__.py").exists(), f"{name} is listed but {folder}/__init__.py is missing"


def test_bundled_example_is_package_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"]["edgeplace.examples"] == "examples"
    assert (ROOT / "examples" / "metro-de.yaml").exists()
