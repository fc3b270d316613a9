"""The ``hil.types`` entry points name, for every type hil's plug-in modules register, the module that registers it
(so a config imports only the plug-ins it names), and each named module does register that type."""

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
            if not module.startswith("hil.") or module.startswith("hil.testing") or (
                    reg.core and module.startswith(reg.core)):
                continue  # a core package's own registrations, test problems, other packages' plug-ins
            key = f"{reg.key}:{name}"
            if key not in index:
                missing.append(f'"{key}" = "{module}"')
            elif index[key] != module:
                wrong.append(f"{key}: index says {index[key]}, registered in {module}")
    assert not missing, "add to [project.entry-points.\"hil.types\"] in pyproject.toml:\n" + "\n".join(missing)
    assert not wrong, "\n".join(wrong)


def test_a_config_imports_only_the_plug_ins_it_names() -> None:
    code = ("import sys; from hil.run import load_run_config; load_run_config('configs/cnon_twin.yaml'); "
            "print(sorted(m for m in sys.modules if m.startswith(('hil.sim_backends', 'hil.drivers', "
            "'hil.calibration', 'slmsuite', 'torchoptics'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    assert out.stdout.strip() == "['hil.sim_backends', 'hil.sim_backends.cnon']", out.stdout
