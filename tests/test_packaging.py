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


# ---------------------------------------------------------------------------
# Lock files: runtime pins for the image, test tools apart


def _lock(name: str) -> dict[str, str]:
    """{normalised name: version} of a lock file; every line must be an exact pin."""
    import re

    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line.strip())
        assert match, f"{name}: {line!r} is not an exact pin (name==version)"
        pins[_norm(match[1])] = match[2]
    return pins


def _norm(name: str) -> str:
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(requirements: list[str]) -> set[str]:
    import re

    return {_norm(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", r.strip())[0]) for r in requirements}


def test_runtime_and_test_locks_are_disjoint_and_exact():
    runtime, test = _lock("requirements.lock"), _lock("requirements-test.lock")
    assert not set(runtime) & set(test), f"in both locks: {sorted(set(runtime) & set(test))}"
    tools = {"pytest", "hypothesis", "jsonschema", "import-linter", "pytest-timeout", "psutil"}
    assert tools <= set(test) and not tools & set(runtime), "test tools belong in requirements-test.lock only"


def test_runtime_lock_is_the_closure_of_the_dependencies():
    """Every runtime dependency of pyproject.toml, and every requirement of each locked
    distribution (as installed here), is pinned in requirements.lock: the image needs nothing else."""
    from importlib.metadata import distribution
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = _lock("requirements.lock")
    missing = _requirement_names(project["dependencies"]) - set(runtime)
    assert not missing, f"dependencies of pyproject.toml missing from requirements.lock: {sorted(missing)}"
    for name, version in runtime.items():
        dist = distribution(name)
        assert dist.version == version, f"{name}: installed {dist.version}, locked {version} (run make setup)"
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                assert _norm(req.name) in runtime, f"{name} needs {req.name}, which requirements.lock lacks"


def test_dockerfile_installs_the_runtime_lock_only():
    text = "\n".join(line for line in (ROOT / "deploy" / "Dockerfile").read_text().splitlines()
                     if not line.lstrip().startswith("#"))  # instructions, not the comments about them
    installs = [line for line in text.splitlines() if "pip install" in line]
    assert any("-r requirements.lock" in line for line in installs), installs
    assert "requirements-test.lock" not in text and ".[test]" not in text
    assert any("--no-deps ." in line for line in installs), "edgeplace itself without resolving anything new"
    copied = [line.split()[1] for line in text.splitlines() if line.startswith("COPY") and "lock" in line]
    assert copied == ["requirements.lock"], copied


def test_setup_installs_both_locks():
    makefile = (ROOT / "Makefile").read_text()
    assert "-r requirements.lock -r requirements-test.lock" in makefile


def test_standalone_check_names_every_read_of_the_folder_beside_the_clone(tmp_path):
    """.ci/check-standalone.sh (run by .ci/run) passes on this repository and fails on a tracked file that
    would read the design folder beside the clone, naming file and line; prose naming its REFERENCE.md as a
    source is fine."""
    import shutil
    import subprocess

    script = ROOT / ".ci" / "check-standalone.sh"
    assert subprocess.run(["bash", str(script)], capture_output=True, text=True).returncode == 0
    repo = tmp_path / "repo"
    (repo / ".ci").mkdir(parents=True)
    shutil.copy(script, repo / ".ci" / "check-standalone.sh")
    folder = "sha" + "red"  # spelt apart, or this very file would be what the check finds
    (repo / "ok.py").write_text(f"# 3700 kg per server ({folder}/REFERENCE.md)\n")
    (repo / "README.md").write_text(f"Figures from ../{folder}/REFERENCE.md.\n")
    (repo / "bad.py").write_text(f'import json\nDATA = Path(__file__).parents[2] / "{folder}" / "data"\n'
                                 f'X = open("../{folder}/x")\n')
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    done = subprocess.run(["bash", str(repo / ".ci" / "check-standalone.sh")], capture_output=True, text=True)
    assert done.returncode == 1
    assert "bad.py:2:" in done.stdout and "bad.py:3:" in done.stdout
    assert "ok.py" not in done.stdout and "README.md" not in done.stdout
