"""``hil bench serial``: round trip of the serial rig on the fake firmware, and the loop's overhead beside it."""

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


def _start_firmware(link: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "hil.drivers.fake_firmware", "--link", str(link)],
                            stdout=subprocess.PIPE, text=True)
    if not proc.stdout.readline().startswith("READY"):
        proc.kill()
        raise RuntimeError("the fake firmware did not start")
    return proc


@BENCHMARKS.register("serial")
def bench_serial(json_path: str | None, quick: bool) -> int:
    from hil.run import execute, load_run_config
    from hil.sections import parse_blackbox

    n_single, iterations = (200, 10) if quick else (2000, 40)
    with tempfile.TemporaryDirectory() as tmp:
        link = Path(tmp) / "board"
        fw = _start_firmware(link)
        try:
            box = parse_blackbox({"type": "serial_board", "port": str(link)}).build()
            gen = torch.Generator().manual_seed(0)
            with box:
                times = []
                for _ in range(n_single):  # one row per query: the latency a step sees
                    x = torch.rand(1, 4, generator=gen) * 3.3
                    t = time.perf_counter()
                    box.query(x)
                    times.append(time.perf_counter() - t)
                x = torch.rand(n_single, 4, generator=gen) * 3.3
                t = time.perf_counter()
                box.query(x)
                batch_s = (time.perf_counter() - t) / n_single
            cfg = load_run_config({
                "blackbox": {"type": "serial_board", "port": str(link)},
                "objective": {"type": "target_distance", "target": [1.0, 2.0, 2.5]},
                "estimator": {"type": "surrogate", "loss": "gradpie", "k": 5, "hidden": [64, 64], "epochs": 5},
                "optimizer": {"mode": "online", "n_starts": 4, "iterations": iterations, "local_samples": 1,
                              "sigma": 0.05, "lr": 0.05, "seed": 0},
                "log": {"dir": tmp}})
            res = execute(cfg, log_path=Path(tmp) / "loop.h5")
        finally:
            fw.kill()
            fw.wait()
    rtt = np.array(times) * 1e3
    per_it_device = res.busy_s / iterations
    per_it_overhead = (res.wall_s - res.busy_s) / iterations
    result: dict[str, Any] = {
        "transport": "serial (pty, fake firmware)", "round_trip_ms": {"median": float(np.median(rtt)),
                                                                      "mean": float(rtt.mean()),
                                                                      "p99": float(np.percentile(rtt, 99))},
        "batched_ms_per_row": batch_s * 1e3, "loop": {"iterations": iterations, "device_s_per_iteration": per_it_device,
                                                      "overhead_s_per_iteration": per_it_overhead}}
    print(f"serial rig on the fake firmware (pty, 115200 baud line protocol), {n_single} single-row queries:")
    print(f"  round trip per query: median {np.median(rtt):.3f} ms, mean {rtt.mean():.3f} ms, p99 "
          f"{np.percentile(rtt, 99):.3f} ms (target < 1 ms: {1 / np.median(rtt):.2f}x); batched: "
          f"{batch_s * 1e3:.3f} ms a row")
    print(f"  online GradPIE loop (4 starts, M=1, 2x64 surrogate, E=5), {iterations} iterations: device "
          f"{per_it_device * 1e3:.1f} ms + loop overhead {per_it_overhead * 1e3:.1f} ms per iteration "
          f"(overhead / device = {per_it_overhead / per_it_device:.1f}x)")
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(result, indent=2))
        print(f"wrote {json_path}")
    return 0
