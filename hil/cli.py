"""The ``hil`` command line: run, validate, pnn, log info, bench."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

from hil.errors import HilError


def _cmd_run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from hil.run import execute, load_run_config

    config = load_run_config(args.config)
    total = config.optimizer.iterations
    bar = tqdm(total=total, desc=config.name, unit="it", disable=args.no_progress, file=sys.stderr,
               dynamic_ncols=True)

    def progress(t, trace):
        best = np.nanmean(trace.best[-1])
        bar.n = t + 1
        bar.set_postfix(queries=trace.queries[-1], best=f"{best:.4g}", refresh=False)
        bar.refresh()

    try:
        result = execute(config, log_path=args.log, resume=args.resume, progress=progress)
    finally:
        bar.close()
    tr = result.trace
    best = tr.best_array()
    print(f"run:     {config.name} ({tr.stopped})")
    if tr.iterations:
        print(f"best:    mean {np.nanmean(best[-1]):.5g}, min {np.nanmin(best[-1]):.5g}, "
              f"max {np.nanmax(best[-1]):.5g} over {best.shape[1]} starting points after {tr.iterations} iterations")
    else:
        print("best:    none: no iteration ran")
    print(f"queries: {result.queries} this session; {result.busy_s:.2f} s inside the BlackBox, "
          f"{result.wall_s:.2f} s wall")
    print(f"log:     {result.log_path}")
    if result.report_path:
        print(f"report:  {result.report_path}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from hil.run import load_run_config

    config = load_run_config(args.config)
    print(f"{args.config}: valid ({config.blackbox.type}, {config.estimator.type}, {config.optimizer.mode})")
    return 0


def _cmd_pnn(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from hil.pnn import format_pnn_summary, load_pnn_config, run_pnn_experiment

    config = load_pnn_config(args.config)
    if args.seeds is not None:
        config.training.seeds = list(range(args.seeds))
    if args.epochs is not None:
        config.training.epochs = args.epochs
    result = run_pnn_experiment(config, log_path=args.log, progress=not args.no_progress)
    print(f"PNN {config.name}: {config.dataset}, {config.training.epochs} epochs, seeds {config.training.seeds}")
    print(format_pnn_summary(result))
    print(f"log:     {result['log']} (bench), {result['model_twin_log']} (model twin)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2))
        print(f"json:    {args.json}")
    return 0


def _cmd_log_info(args: argparse.Namespace) -> int:
    from hil.querylog import summarize

    print(summarize(args.log))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from hil import bench
    from hil.errors import ConfigError
    from hil.registry import BENCHMARKS

    if args.seeds != 1 and args.task not in bench.BENCH_TASKS:
        raise ConfigError(f"--seeds applies to the estimator benchmarks ({', '.join(bench.BENCH_TASKS)}), "
                          f"not to {args.task!r}")
    if args.set and args.task not in bench.BENCH_TASKS:
        raise ConfigError(f"--set applies to the estimator benchmarks ({', '.join(bench.BENCH_TASKS)}), "
                          f"not to {args.task!r}")
    if args.task == "log":
        return bench.bench_log(rows=args.rows, quick=args.quick)
    if args.task in bench.BENCH_TASKS:
        return bench.bench_task(args.task, json_path=args.json, quick=args.quick, progress=not args.no_progress,
                                overrides=bench.parse_overrides(args.set), seeds=args.seeds)
    if args.task in BENCHMARKS.names():
        return BENCHMARKS.get(args.task)(args.json, args.quick)
    allowed = ", ".join([*bench.BENCH_TASKS, "log", *BENCHMARKS.names()])
    raise ConfigError(f"unknown benchmark {args.task!r}; allowed: {allowed}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hil", description="Hardware-in-the-loop training of physical systems.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run a config: optimise with every query logged, write log + PNG report")
    p.add_argument("config", help="YAML config, e.g. configs/cnon_twin.yaml")
    p.add_argument("--log", help="log path (default: <log.dir>/<run id>.h5)")
    p.add_argument("--resume", metavar="LOG", help="continue a killed run from its log")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("validate", help="check a config without running anything")
    p.add_argument("config")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("pnn", help="train a physical neural network three ways and test each on the bench")
    p.add_argument("config", help="YAML config, e.g. configs/pnn_digits.yaml")
    p.add_argument("--json", help="write per-run results and the summary as JSON")
    p.add_argument("--log", help="log path (default: <log.dir>/<name>-<time>.h5)")
    p.add_argument("--seeds", type=int, help="override: use seeds 0..N-1")
    p.add_argument("--epochs", type=int, help="override: training epochs")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_pnn)

    p = sub.add_parser("log", help="inspect query logs")
    log_sub = p.add_subparsers(dest="log_command", required=True)
    q = log_sub.add_parser("info", help="summarise a log")
    q.add_argument("log")
    q.set_defaults(func=_cmd_log_info)

    p = sub.add_parser("bench", help="benchmarks: estimators on a task, or the query log's append throughput")
    p.add_argument("task", help="cnon, owms, opamp, log, or a plug-in's benchmark (e.g. serial)")
    p.add_argument("--json", help="write the results as JSON")
    p.add_argument("--quick", action="store_true", help="a smaller version (under 2 minutes)")
    p.add_argument("--rows", type=int, default=20000, help="log benchmark: rows to append")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="change the problem for every method (repeatable): blackbox.*, objective.*, optimizer.*, "
                        "or surrogate.* for every surrogate method, e.g. --set optimizer.adam_beta1=0.5")
    p.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="estimator benchmarks: also rerun every method with the next N-1 seed sets (starting "
                        "points, local samples, surrogate init) and print the query ratios over all N")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except HilError as exc:
        print(f"hil: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hil: interrupted; every answered query is in the log", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
