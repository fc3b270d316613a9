"""The core (hil/) never imports the plug-in layers hil.sim_backends, hil.drivers, hil.calibration.

Three guards: import-linter's contract in pyproject.toml (run here, and shown to break on each import
form), a check that the contract names every module in hil/, and an AST scan of hil/ that also sees
string imports (``importlib.import_module("hil.sim_backends.cnon")``) no import graph contains.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "hil"
PLUGINS = ("sim_backends", "drivers", "calibration")
CONTRACT_NAME = "The core (hil/) never imports the plug-in layers"
LINT = [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
        "--no-cache", "--no-logo"]


def _contract() -> dict:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    matches = [c for c in config["contracts"] if c["name"] == CONTRACT_NAME]
    assert len(matches) == 1, f"pyproject.toml: expected one import-linter contract named {CONTRACT_NAME!r}"
    return matches[0]


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _core_modules(root: Path = REPO) -> dict[str, Path]:
    return {_module_name(p, root): p for p in sorted((root / "hil").rglob("*.py"))}


# -- 1. import-linter -------------------------------------------------------------------------


def test_import_linter_contract_is_kept():
    proc = subprocess.run(LINT, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{CONTRACT_NAME} KEPT" in proc.stdout
    assert "0 broken" in proc.stdout


def test_import_linter_contract_breaks_on_each_import_form(tmp_path):
    """The contract must be able to fail: plant one plug-in import of each form in a copy of the core."""
    shutil.copytree(CORE, tmp_path / "hil", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    planted = {
        "hil.errors": "import hil.sim_backends.cnon",
        "hil.versions": "from hil.drivers import visa",
        "hil.sampling": "from hil import calibration",
        "hil.report": "from .sim_backends import cnon",
        "hil.knn": "from . import drivers",
        "hil.registry": "from .calibration.flatfield import fit",
        "hil.objectives": "def _lazy():\n    from hil.sim_backends.cnon import CNONTwin",
    }
    lines = {}
    for module, code in planted.items():
        path = tmp_path / (module.replace(".", "/") + ".py")
        text = path.read_text().rstrip("\n") + "\n"
        path.write_text(text + code + "\n")
        lines[module] = text.count("\n") + code.count("\n") + 1
    proc = subprocess.run(LINT, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"{CONTRACT_NAME} BROKEN" in proc.stdout
    for module, line in lines.items():
        assert f"{module} is not allowed to import hil:" in proc.stdout, module
        assert f"{module} -> hil (l.{line})" in proc.stdout, module


# -- 2. the contract names every core module -----------------------------------------------------


def test_contract_covers_every_core_module():
    contract = _contract()
    assert contract["type"] == "forbidden"
    listed = set(contract["source_modules"])
    modules = _core_modules()
    # the package module "hil" (hil/__init__.py) is the contract's forbidden module: every import of a
    # plug-in layer shows up as an import of it (see pyproject.toml); the AST scan below covers that file
    assert contract["forbidden_modules"] == ["hil"] and contract.get("as_packages") is False
    missing = sorted(set(modules) - listed - {"hil"})
    assert not missing, f"core module(s) missing from the import-linter contract's source_modules: {missing}"
    stale = sorted(listed - set(modules))
    assert not stale, f"source_modules lists module(s) that do not exist in hil/: {stale}"


def test_coverage_check_names_a_new_module(tmp_path):
    shutil.copytree(CORE, tmp_path / "hil", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "hil" / "sneaky.py").write_text("from hil.drivers import visa\n")
    (tmp_path / "hil" / "sub").mkdir()
    (tmp_path / "hil" / "sub" / "__init__.py").write_text("")
    (tmp_path / "hil" / "sub" / "deep.py").write_text("")
    modules = _core_modules(tmp_path)
    missing = sorted(set(modules) - set(_contract()["source_modules"]) - {"hil"})
    assert missing == ["hil.sneaky", "hil.sub", "hil.sub.deep"]


# -- 3. AST scan -------------------------------------------------------------------------------


_PLUGIN_RE = "|".join(PLUGINS)
#: a string that *is* a plug-in module path ("hil.sim_backends.cnon", "hil.drivers.visa:Scope")
_MODULE_STRING = re.compile(rf"^hil\.({_PLUGIN_RE})(\.\w+)*(:[\w.]+)?$")
#: the first argument of an import call naming a plug-in, absolute, relative or top-level
_IMPORT_ARG = re.compile(rf"^(\.+|hil\.)?({_PLUGIN_RE})(\.\w+)*$")
_IMPORT_CALLS = {"import_module", "__import__", "find_spec", "import_string"}


def _is_plugin(module: str) -> bool:
    parts = module.split(".")
    return (parts[0] == "hil" and len(parts) > 1 and parts[1] in PLUGINS) or parts[0] in PLUGINS


def plugin_imports(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """``(line, text)`` of every import of a plug-in layer in the source of ``module``."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                if node.level > len(base_parts):
                    continue
                base = ".".join(base_parts[: len(base_parts) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            arg = node.args[0] if node.args else None
            if name in _IMPORT_CALLS and isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                if _IMPORT_ARG.match(arg.value):
                    found.append((node.lineno, f"{name}({arg.value!r})"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _MODULE_STRING.match(node.value):
            found.append((node.lineno, repr(node.value)))
        found += [(node.lineno, name) for name in names if _is_plugin(name)]
    return sorted(set(found))


def test_no_core_file_imports_a_plugin_layer():
    modules = _core_modules()
    assert "hil" in modules and "hil.run" in modules and len(modules) >= 10  # the scan sees the core
    bad = []
    for module, path in modules.items():
        for line, text in plugin_imports(path.read_text(), module, path.name == "__init__.py"):
            bad.append(f"{path.relative_to(REPO)}:{line}: {text}")
    assert not bad, "the core imports a plug-in layer:\n" + "\n".join(bad)


@pytest.mark.parametrize("code", [
    "import hil.sim_backends",
    "import hil.sim_backends.cnon as cnon",
    "from hil.drivers import visa",
    "from hil.calibration.flatfield import fit",
    "from hil import calibration",
    "from hil import errors, drivers",
    "from . import sim_backends",
    "from .drivers import visa",
    "from .calibration.flatfield import fit",
    "import sim_backends.cnon",
    "def f():\n    from hil.sim_backends.cnon import CNONTwin",
    "import importlib\nimportlib.import_module('hil.sim_backends.cnon')",
    "from importlib import import_module\nimport_module('hil.drivers')",
    "import_module('.calibration', package='hil')",
    "__import__('hil.sim_backends')",
    "importlib.util.find_spec('hil.drivers.visa')",
    "PLUGIN = 'hil.sim_backends.cnon'",
    "ENTRY = {'cnon': 'hil.sim_backends.cnon:CNONTwin'}",
])
def test_scan_catches(code):
    assert plugin_imports(code, "hil.somewhere"), code


def test_scan_catches_relative_imports_in_the_package_init_and_subpackages():
    assert plugin_imports("from .drivers import visa", "hil", is_package=True)
    assert plugin_imports("from ..sim_backends import cnon", "hil.sub.mod")
    assert plugin_imports("from .. import calibration", "hil.sub", is_package=True)
    assert not plugin_imports("from .drivers import visa", "hil.sub.mod")  # that is hil.sub.drivers


@pytest.mark.parametrize("code", [
    "from hil import registry, errors",
    "from . import errors",
    "import hil.querylog",
    "PURPOSES = ('step', 'probe', 'calibration')",
    '"""Plug-ins (``hil.sim_backends``, ``hil.drivers``) register themselves by name."""',
    "import_module(ep.value.split(':')[0])",
    "log.info('hil.drivers are loaded through entry points')",
    "from hil.sim_backendsx import y",
])
def test_scan_passes(code):
    assert plugin_imports(code, "hil.somewhere") == []
