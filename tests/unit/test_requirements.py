"""Every third-party package the code imports is declared by name in requirements*.txt, and the
lock files pin every declared package (so CI and the Docker image install what the code needs)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Our own top-level modules, as ruff's isort knows them (pyproject.toml).
FIRST_PARTY = set(tomllib.loads((ROOT / "pyproject.toml").read_text())
                  ["tool"]["ruff"]["lint"]["isort"]["known-first-party"])
RUNTIME_CODE = ["app.py", "cli.py", "api", "services", "ui", "models", "alembic"]
DEV_CODE = ["tests", "bench"]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            names |= _declared(path.parent / line[3:].strip())
        elif line and not line.startswith("-"):
            names.add(_norm(re.split(r"[\[<>=!~; ]", line, maxsplit=1)[0]))
    return names


def _imported_distributions(places: list[str]) -> dict[str, set[str]]:
    """{distribution: {files importing it}} for the top-level imports of the given files."""
    dists = packages_distributions()
    found: dict[str, set[str]] = {}
    files = [p for place in places for p in ([ROOT / place] if place.endswith(".py")
                                             else (ROOT / place).rglob("*.py"))]
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top in FIRST_PARTY or top == "__future__":
                    continue
                assert top in dists, f"{file.relative_to(ROOT)} imports {top}, which no installed package provides"
                for dist in dists[top]:
                    found.setdefault(_norm(dist), set()).add(str(file.relative_to(ROOT)))
    return found


def test_runtime_imports_are_declared_in_requirements_txt():
    declared = _declared(ROOT / "requirements.txt")
    missing = {d: sorted(f) for d, f in _imported_distributions(RUNTIME_CODE).items() if d not in declared}
    assert missing == {}


def test_test_and_benchmark_imports_are_declared_in_requirements_dev_txt():
    declared = _declared(ROOT / "requirements-dev.txt")
    missing = {d: sorted(f) for d, f in _imported_distributions(DEV_CODE).items() if d not in declared}
    assert missing == {}


def test_the_locks_pin_every_declared_package_with_hashes():
    for source, lock in (("requirements.txt", "requirements.lock"), ("requirements-dev.txt", "requirements-dev.lock")):
        text = (ROOT / lock).read_text()
        pinned = {_norm(m) for m in re.findall(r"^([A-Za-z0-9_.\-]+)==\S+", text, re.MULTILINE)}
        assert _declared(ROOT / source) - pinned == set(), lock
        pins = re.findall(r"^[A-Za-z0-9_.\-]+==.*$", text, re.MULTILINE)
        without_hashes = [pin for pin in pins if not pin.endswith("\\")]  # hashes follow on continuation lines
        assert pins and without_hashes == [], lock
