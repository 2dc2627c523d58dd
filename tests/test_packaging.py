"""The install ships every package: pyproject's explicit list against the tree.

The libraries keep their folders at the top of the repository (topology/, ...)
and ship inside the edgeplace package (edgeplace.topology, ...), through
[tool.setuptools.package-dir].
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Folder at the top of the repository -> the package it ships as.
TOP = {"topology": "edgeplace.topology", "policies": "edgeplace.policies", "optimizer": "edgeplace.optimizer",
       "k8s": "edgeplace.k8s", "edgeplace": "edgeplace", "examples": "edgeplace.examples"}


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _folder(package: str, mapped: dict[str, str]) -> Path:
    """The source folder of `package`: its longest mapped prefix, then the rest as subfolders."""
    parts = package.split(".")
    for k in range(len(parts), 0, -1):
        prefix = ".".join(parts[:k])
        if prefix in mapped:
            return ROOT / mapped[prefix] / Path(*parts[k:]) if parts[k:] else ROOT / mapped[prefix]
    return ROOT / Path(*parts)


def test_every_package_in_the_tree_is_listed_in_pyproject():
    # A package missing from the list installs fine in editable mode but is absent from a wheel.
    found = {".".join((TOP[top], *p.parent.relative_to(ROOT / top).parts)) for top in TOP
             for p in (ROOT / top).rglob("__init__.py") if "e2e" not in p.parts}
    missing = found - set(_config()["packages"])
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"


def test_every_listed_package_exists():
    config = _config()
    for name in config["packages"]:
        folder = _folder(name, config.get("package-dir", {}))
        assert (folder / "__init__.py").exists(), f"{name} is listed but {folder}/__init__.py is missing"


def test_no_top_level_package_but_edgeplace():
    # topology, policies, optimizer and k8s are names of unrelated published packages.
    tops = {name.split(".")[0] for name in _config()["packages"]}
    assert tops == {"edgeplace"}


def test_libraries_ship_from_their_top_level_folders():
    mapped = _config()["package-dir"]
    for folder, package in TOP.items():
        if package != "edgeplace":
            assert mapped[package] == folder


def test_bundled_example_is_package_data():
    config = _config()
    assert config["package-dir"]["edgeplace.examples"] == "examples"
    assert (ROOT / "examples" / "metro-de.yaml").exists()
