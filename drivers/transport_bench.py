"""``hil bench serial`` / ``hil bench visa``: a transport's round trip on its simulated device, the loop beside it."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hil.registry import BENCHMARKS


def round_trips(section: dict[str, Any], n: int) -> dict[str, float]:
    """Single-row queries through the validated, logged-capable path: latency per query, and per row batched."""
    from hil.sections import parse_blackbox

    box = parse_blackbox(section).build()
    gen = torch.Generator().manual_seed(0)
    with box:
        times = []
        for _ in range(n):
            x = box.spec.lower + (box.spec.upper - box.spec.lower) * torch.rand(1, box.spec.input_dim, generator=gen)
            t = time.perf_counter()
            box.query(x)
            times.append(time.perf_counter() - t)
        x = box.spec.lower + (box.spec.upper - box.spec.lower) * torch.rand(n, box.spec.input_dim, generator=gen)
        t = time.perf_counter()
        box.query(x)
        batch_s = (time.perf_counter() - t) / n
    ms = np.array(times) * 1e3
    return {"median_ms": float(np.median(ms)), "mean_ms": float(ms.mean()), "p99_ms": float(np.percentile(ms, 99)),
            "batched_ms_per_row": batch_s * 1e3}


def loop_overhead(section: dict[str, Any], iterations: int, tmp: str, target: list[float] | None = None
                  ) -> dict[str, float]:
    from hil.run import execute, load_run_config

    cfg = load_run_config({
        "blackbox": section, "objective": {"type": "target_distance", "target": target or [1.0, 2.0, 2.5]},
        "estimator": {"type": "surrogate", "loss": "gradpie", "k": 5, "hidden": [64, 64], "epochs": 5},
        "optimizer": {"type": "gradient", "n_starts": 4, "iterations": iterations, "local_samples": 1,
                      "sigma": 0.05, "lr": 0.05, "seed": 0},
        "log": {"dir": tmp}})
    res = execute(cfg, log_path=Path(tmp) / f"loop-{time.monotonic_ns()}.h5")
    return {"iterations": iterations, "device_s_per_iteration": res.busy_s / iterations,
            "overhead_s_per_iteration": (res.wall_s - res.busy_s) / iterations}


def report(title: str, rtt: dict[str, float], loop: dict[str, float], json_path: str | None,
           extra: dict[str, Any] | None = None) -> int:
    print(f"{title}:")
    print(f"  round trip per query: median {rtt['median_ms']:.3f} ms, mean {rtt['mean_ms']:.3f} ms, p99 "
          f"{rtt['p99_ms']:.3f} ms (target < 1 ms: {1 / rtt['median_ms']:.2f}x); batched: "
          f"{rtt['batched_ms_per_row']:.3f} ms a row")
    dev, over = loop["device_s_per_iteration"], loop["overhead_s_per_iteration"]
    print(f"  online GradPIE loop (4 starts, M=1, 2x64 surrogate, E=5), {loop['iterations']} iterations: device "
          f"{dev * 1e3:.1f} ms + loop overhead {over * 1e3:.1f} ms per iteration (overhead / device = "
          f"{over / dev:.1f}x)")
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps({"transport": title, "round_trip": rtt, "loop": loop, **(extra or {})},
                                              indent=2))
        print(f"wrote {json_path}")
    return 0


@BENCHMARKS.register("serial")
def bench_serial(json_path: str | None, quick: bool) -> int:
    n, iterations = (200, 10) if quick else (2000, 40)
    with tempfile.TemporaryDirectory() as tmp:
        link = Path(tmp) / "board"
        fw = subprocess.Popen([sys.executable, "-m", "hil.drivers.fake_firmware", "--link", str(link)],
                              stdout=subprocess.PIPE, text=True)
        try:
            if not fw.stdout.readline().startswith("READY"):
                raise RuntimeError("the fake firmware did not start")
            section = {"type": "serial_board", "port": str(link)}
            rtt, loop = round_trips(section, n), loop_overhead(section, iterations, tmp)
        finally:
            fw.kill()
            fw.wait()
    return report(f"serial rig on the fake firmware (pty, line protocol), {n} single-row queries", rtt, loop,
                  json_path)


@BENCHMARKS.register("visa")
def bench_visa(json_path: str | None, quick: bool) -> int:
    from hil.drivers.scpi_loopback import LoopbackInstrument

    n, iterations = (200, 10) if quick else (2000, 40)
    with tempfile.TemporaryDirectory() as tmp, LoopbackInstrument() as inst:
        section = {"type": "visa_rig", "resource": inst.resource}
        rtt, loop = round_trips(section, n), loop_overhead(section, iterations, tmp)
        nagle = _with_nagle(inst.resource, 20)
    code = report(f"VISA rig over pyvisa-py's TCP socket to the loopback SCPI server, {n} single-row queries", rtt,
                  loop, json_path, {"nagle_on_ms_per_query": nagle})
    print(f"  with Nagle's algorithm left on (pyvisa-py's default): {nagle:.1f} ms a query "
          f"({nagle / rtt['median_ms']:.0f}x slower)")
    return code


def _with_nagle(resource: str, n: int) -> float:
    import pyvisa

    rm = pyvisa.ResourceManager("@py")
    inst = rm.open_resource(resource, read_termination="\n", write_termination="\n")
    try:
        t = time.perf_counter()
        for _ in range(n):
            inst.write("SOUR:VOLT:LIST 1,1,1,1")
            inst.query("MEAS:VOLT:LIST?")
        return (time.perf_counter() - t) / n * 1e3
    finally:
        inst.close()


@BENCHMARKS.register("slm")
def bench_slm(json_path: str | None, quick: bool) -> int:
    n, iterations = (100, 10) if quick else (1000, 40)
    section = {"type": "slm_camera_rig", "slm_shape": [64, 64], "blocks": [16, 16], "roi": [16, 16, 32, 32],
               "regions": [2, 2], "exposure_s": 1.0, "on_saturation": "count",
               "slm": {"class": "slmsuite.hardware.slms.simulated.SimulatedSLM", "args": [[64, 64]]},
               "camera": {"class": "slmsuite.hardware.cameras.simulated.SimulatedCamera", "args": ["$slm"]}}
    with tempfile.TemporaryDirectory() as tmp:
        rtt, loop = round_trips(section, n), loop_overhead(section, iterations, tmp, target=[50.0] * 4)
    return report(f"SLM + camera rig on slmsuite's SimulatedSLM + SimulatedCamera (64 x 64, no settle time), {n} "
                  f"single-pattern queries", rtt, loop, json_path)
