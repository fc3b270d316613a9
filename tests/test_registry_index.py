"""The ``hil.types`` entry points name, for every type hil's plug-in modules register, the module that registers or
declares it (so a config imports only the plug-ins it names); declared types are what their implementations register;
``hil validate`` checks every shipped config without importing torch."""

from __future__ import annotations

import inspect
import subprocess
import sys

from hil import registry as R


def _registries() -> list[R.Registry]:
    return [v for v in vars(R).values() if isinstance(v, R.Registry)]


def test_every_registered_type_of_hils_plug_ins_is_in_the_index_with_its_module() -> None:
    index = R._type_index()
    missing, wrong = [], []
    for reg in _registries():
        for name in reg.names():
            module = inspect.getmodule(reg.get(name)).__name__
            declared = reg._declared.get(name)
            if declared is not None and declared[0].__module__ == reg.declarations:
                continue  # declared by the registry's own core declarations (hil.optim.configs, ...)
            if not module.startswith("hil.") or module.startswith("hil.testing") or (
                    reg.core and module.startswith(reg.core)):
                continue  # a core package's own registrations, test problems, other packages' plug-ins
            key = f"{reg.key}:{name}"
            expected = declared[0].__module__ if declared is not None else module
            if key not in index:
                missing.append(f'"{key}" = "{expected}"')
            elif index[key] != expected:
                wrong.append(f"{key}: index says {index[key]}, {'declared' if declared else 'registered'} in "
                             f"{expected}")
    assert not missing, "add to [project.entry-points.\"hil.types\"] in pyproject.toml:\n" + "\n".join(missing)
    assert not wrong, "\n".join(wrong)


def test_a_config_imports_only_the_plug_ins_it_names() -> None:
    code = ("import sys; from hil.run import load_run_config; load_run_config('configs/cnon_twin.yaml'); "
            "print(sorted(m for m in sys.modules if m.startswith(('hil.sim_backends', 'hil.drivers', "
            "'hil.calibration', 'slmsuite', 'torchoptics'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    assert out.stdout.strip() == "['hil.sim_backends', 'hil.sim_backends.cnon_config']", out.stdout


def test_every_declared_type_registers_its_declared_config() -> None:
    found = 0
    for reg in _registries():
        reg.names()  # imports every implementation
        for name, (config, implementation, _) in reg._declared.items():
            module, _, attr = implementation.partition(":")
            cls = getattr(__import__("importlib").import_module(module), attr)
            assert reg.get(name) is cls, f"{reg.kind} {name!r}: declared as {implementation}, registered {cls}"
            assert cls.Config is config
            found += 1
    assert found >= 20


CONFIGS = sorted(p.name for p in (__import__("pathlib").Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_validate_checks_every_shipped_config_without_importing_torch() -> None:
    """``hil validate`` in well under a second: torch's import alone takes over one here."""
    code = ("import sys\nfrom hil.cli import main\nfor path in sys.argv[1:]:\n"
            "    assert main(['validate', path]) == 0\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'h5py', 'matplotlib', 'slmsuite',"
            " 'torchoptics'))\nprint(heavy)")
    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code, *[f"configs/{c}" for c in CONFIGS]], capture_output=True,
                         text=True, cwd=str(root))
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_a_declaration_names_only_the_attributes_its_registry_reads() -> None:
    import pytest

    from hil.errors import RegistryError

    with pytest.raises(RegistryError, match=r"cannot declare \['sense'\]; what blackbox types may declare: nothing"):
        R.BLACKBOXES.declare("no_such_box", "no.such:Box", sense="max")
    with pytest.raises(RegistryError, match="what optimizer types may declare: estimator_types, uses_gradient"):
        R.OPTIMIZERS.declare("no_such_optimizer", "no.such:Optimizer", uses_grad=True)
