"""The ``hil`` command line: run, validate, pnn, calibrate, log info|watch, bench, sweep."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator, Sequence

import numpy as np

from hil.errors import HilError


@contextlib.contextmanager
def _dry_run_data(args: argparse.Namespace, path: str) -> Iterator[dict | None]:
    """With ``--dry-run``: the config at ``path`` with its rigs on their simulated counterparts (started here,
    stopped on the way out); else ``None``."""
    if not getattr(args, "dry_run", False):
        yield None
        return
    from hil.config import load_yaml
    from hil.dryrun import dry_run

    with dry_run(load_yaml(path), say=lambda s: print(s, file=sys.stderr)) as data:
        yield data


def _cmd_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hil.runconfig import load_run_config

    config = load_run_config(args.config)  # the file as written first: its errors name the user's keys
    with _dry_run_data(args, args.config) as data:
        if data is not None:
            config = load_run_config(data, base=Path(args.config).parent)
        return _run(args, config)


def _run(args: argparse.Namespace, config) -> int:
    from tqdm import tqdm

    from hil.run import execute

    loop = config.optimizer.loop
    by_queries = loop.max_queries is not None  # a query budget: the bar counts queries, else iterations
    bar = tqdm(total=loop.max_queries if by_queries else loop.iterations, desc=config.name,
               unit="q" if by_queries else "it", disable=args.no_progress, file=sys.stderr, dynamic_ncols=True)

    def progress(t, trace):
        bar.n = trace.queries[-1] if by_queries else t + 1
        bar.set_postfix(it=t + 1, queries=trace.queries[-1], best=f"{trace.best_overall[-1]:.4g}", refresh=False)
        bar.refresh()

    try:
        result = execute(config, log_path=args.log, resume=args.resume, progress=progress,
                         say=lambda s: bar.write(s, file=sys.stderr))
    finally:
        bar.close()
    tr = result.trace
    best = tr.best_array()
    print(f"run:     {config.name} ({tr.stopped})")
    if tr.iterations and np.isfinite(best[-1]).any():
        print(f"best:    {tr.best_overall[-1]:.5g} over everything measured; per start: mean "
              f"{np.nanmean(best[-1]):.5g}, min {np.nanmin(best[-1]):.5g}, max {np.nanmax(best[-1]):.5g} "
              f"over {best.shape[1]} starting point(s) after {tr.iterations} iterations")
    elif tr.iterations:
        print(f"best:    none: the objective was NaN or infinite for every measurement in {tr.iterations} "
              f"iterations")
    else:
        print("best:    none: no iteration ran")
    duty = f" = duty cycle {100 * result.busy_s / result.wall_s:.1f} %" if result.wall_s > 0 else ""
    print(f"queries: {result.queries} this session; {result.busy_s:.2f} s inside the BlackBox / "
          f"{result.wall_s:.2f} s wall{duty}")
    print(f"log:     {result.log_path}")
    if result.report_path:
        print(f"report:  {result.report_path}")
    if tr.iterations and not np.isfinite(best[-1]).any():
        print(f"hil: error: the objective was never finite: check what the BlackBox answers (hil log info "
              f"{result.log_path}) and the objective's settings", file=sys.stderr)
        return 1
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hil.config import load_yaml
    from hil.runconfig import check_buildable, is_pnn_config, load_run_config

    data = load_yaml(args.config)  # read once; relative paths inside stay relative to the file's folder
    base = Path(args.config).parent
    if is_pnn_config(data):
        from hil.pnn_config import check_buildable as check_pnn
        from hil.pnn_config import load_pnn_config

        pnn = load_pnn_config(data, base=base)
        check_pnn(pnn)
        print(f"{args.config}: valid (physical-neural-network experiment {pnn.name}: {', '.join(pnn.modes)}; "
              f"run it with hil pnn)")
        return 0
    config = load_run_config(data, base=base)
    check_buildable(config)  # what a run would find before its first query, from the configs when they say
    parts = [config.blackbox.type, f"optimizer {config.optimizer.type}"]
    if config.estimator is not None:
        parts.append(f"estimator {config.estimator.type}")
    print(f"{args.config}: valid ({', '.join(parts)})")
    return 0


def _cmd_log_watch(args: argparse.Namespace) -> int:
    from hil.watch import watch

    watch(args.log, out=args.out, interval_s=args.interval, idle_s=args.idle, once=args.once)
    return 0


def _cmd_pnn(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hil.pnn_config import load_pnn_config

    config = load_pnn_config(args.config)
    with _dry_run_data(args, args.config) as data:
        if data is not None:
            config = load_pnn_config(data, base=Path(args.config).parent)
        return _pnn(args, config)


def _pnn(args: argparse.Namespace, config) -> int:
    import json
    from pathlib import Path

    from hil.pnn import format_pnn_summary, run_pnn_experiment

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
    from hil.bench import bench_task
    from hil.bench.extras import bench_log
    from hil.bench.sweep import run_sweep, shipped_suites, suite_path
    from hil.bench.task import parse_overrides, shipped_tasks
    from hil.errors import ConfigError
    from hil.registry import BENCHMARKS

    is_task = args.task in shipped_tasks() or args.task.endswith((".yaml", ".yml"))
    if not is_task and (args.seeds is not None or args.set or args.methods or args.kept_only):
        raise ConfigError(f"--seeds, --set, --methods and --kept-only apply to benchmark tasks "
                          f"({', '.join(shipped_tasks())} or a task file), not to {args.task!r}")
    if args.task == "log":
        return bench_log(rows=args.rows, quick=args.quick)
    if is_task:
        methods = [m.strip() for m in args.methods.split(",")] if args.methods else None
        bench_task(args.task, json_path=args.json, quick=args.quick, progress=not args.no_progress,
                   overrides=parse_overrides(args.set), seeds=args.seeds, methods=methods, log_dir=args.log_dir,
                   runs_dir=args.runs_dir, executor=args.executor, workers=args.jobs, address=args.address,
                   kept_only=args.kept_only)
        return 0
    if args.task in shipped_suites():
        from pathlib import Path

        out = str(Path(args.json).with_suffix("")) if args.json else None
        doc = run_sweep(suite_path(args.task), out_dir=out, progress=not args.no_progress, executor=args.executor,
                        workers=args.jobs, address=args.address, quick=args.quick)
        if args.json:
            Path(args.json).write_text(json.dumps(doc, indent=2))
            print(f"wrote {args.json}")
        return 0
    if args.task in BENCHMARKS.names():
        return BENCHMARKS.get(args.task)(args.json, args.quick)
    allowed = ", ".join([*shipped_tasks(), *shipped_suites(), "log", *BENCHMARKS.names()])
    raise ConfigError(f"unknown benchmark {args.task!r}; allowed: {allowed}, or a task file (my_task.yaml)")


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from hil.calib.runner import describe_record, load_rig_config
    from hil.errors import ConfigError
    from hil.registry import CALIBRATIONS

    if args.name == "show":
        if not args.record:
            raise ConfigError("hil calibrate show: give --record RECORD.json")
        print(describe_record(args.record))
        return 0
    names = CALIBRATIONS.names()
    if args.name not in (*names, "all", "list"):
        raise ConfigError(f"unknown calibration {args.name!r}; allowed: {', '.join(names)}, all, list, show")
    if not args.rig:
        raise ConfigError(f"hil calibrate {args.name}: give the rig with --rig CONFIG (a run or PNN config)")
    rig = load_rig_config(args.rig, extra_records=args.with_records, model=args.model)
    if not args.dry_run:
        return _calibrate(args, rig)
    import dataclasses

    from hil.dryrun import dry_run

    # the rig on its simulated counterpart; its records are made for that section (so a bench refuses them) and
    # go to calibrations/<name>-dry-run/ unless --out says otherwise
    with dry_run({rig.where: rig.section}, say=lambda s: print(s, file=sys.stderr)) as data:
        return _calibrate(args, dataclasses.replace(rig, section=data[rig.where], name=f"{rig.name}-dry-run"))


def _calibrate(args: argparse.Namespace, rig) -> int:
    from hil.calib.runner import applicable, run_all, run_calibration
    from hil.errors import ConfigError
    from hil.registry import CALIBRATIONS

    if args.name == "list":
        for name, lack in applicable(rig):
            print(f"{name:<14} {CALIBRATIONS.get(name).summary}" + (f"  [cannot run: {lack}]" if lack else ""))
        return 0
    if args.name == "all":
        if args.option:
            raise ConfigError("--option applies to one calibration, not to all")
        run_all(rig, out_dir=args.out, seed=args.seed)
    else:
        run_calibration(args.name, rig, out_dir=args.out, options=args.option, seed=args.seed)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hil", description="Hardware-in-the-loop training of physical systems.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", help="run a config: optimise with every query logged, write log + PNG report")
    p.add_argument("config", help="YAML config, e.g. configs/cnon_twin.yaml")
    p.add_argument("--log", help="log path (default: <log.dir>/<run id>.h5)")
    p.add_argument("--resume", metavar="LOG", help="continue a killed run from its log")
    p.add_argument("--dry-run", action="store_true", help="run the same config with every rig on its simulated "
                   "counterpart (fake firmware, loopback SCPI server, slmsuite's simulated SLM and camera), "
                   "started and stopped by hil")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("validate", help="check a config (run or PNN) without running anything")
    p.add_argument("config", help="YAML config, e.g. configs/owms_twin.yaml")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("pnn", help="train a physical neural network three ways and test each on the bench")
    p.add_argument("config", help="YAML config, e.g. configs/pnn_digits.yaml")
    p.add_argument("--json", help="write per-run results and the summary as JSON")
    p.add_argument("--log", help="log path (default: <log.dir>/<name>-<time>.h5)")
    p.add_argument("--seeds", type=int, help="override: use seeds 0..N-1")
    p.add_argument("--epochs", type=int, help="override: training epochs")
    p.add_argument("--dry-run", action="store_true", help="the bench on its simulated counterpart (see hil run)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_pnn)

    p = sub.add_parser("calibrate", help="calibrate a rig: write a record (JSON), a PNG and the queries' log")
    p.add_argument("name", help="a calibration (hil calibrate list --rig CONFIG shows them), all, list, or show")
    p.add_argument("--rig", metavar="CONFIG", help="the run config (its blackbox) or PNN config (its bench)")
    p.add_argument("--out", metavar="DIR", help="where records go (default: calibrations/<config name>/)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="a calibration option")
    p.add_argument("--with", dest="with_records", action="append", default=[], metavar="RECORD",
                   help="apply this record to the rig first (besides the config's calibrations:)")
    p.add_argument("--model", metavar="TWIN.yaml", help="the model twin to fit (default: the config's model twin)")
    p.add_argument("--record", metavar="RECORD", help="hil calibrate show: the record to describe")
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration's random choices (default 0)")
    p.add_argument("--dry-run", action="store_true", help="calibrate the rig's simulated counterpart (see hil run "
                   "--dry-run); records go to calibrations/<name>-dry-run/")
    p.set_defaults(func=_cmd_calibrate)

    p = sub.add_parser("log", help="inspect query logs")
    log_sub = p.add_subparsers(dest="log_command", metavar="info|watch")
    p.set_defaults(func=lambda args, p=p: _help(p))
    q = log_sub.add_parser("info", help="summarise a log (also one that a run is still writing)")
    q.add_argument("log", help="an HDF5 query log (runs/<run id>.h5)")
    q.set_defaults(func=_cmd_log_info)
    q = log_sub.add_parser("watch", help="follow a log that a run is writing and redraw its PNG report "
                                         "(objective of every query and the best so far) until the run ends")
    q.add_argument("log", help="an HDF5 query log, e.g. the one a running `hil run` prints")
    q.add_argument("--out", metavar="PNG", help="where the picture goes (default: LOG.watch.png)")
    q.add_argument("--interval", type=float, default=2.0, metavar="S", help="seconds between looks (default 2)")
    q.add_argument("--idle", type=float, metavar="S", help="stop after S seconds without new queries "
                                                          "(default: wait for the run to finish)")
    q.add_argument("--once", action="store_true", help="draw once and exit")
    q.set_defaults(func=_cmd_log_watch)

    p = sub.add_parser("bench", help="benchmarks: every method at equal device queries on a task, the log's "
                                      "append throughput, a transport's round trip")
    p.add_argument("task", help="a shipped task (cnon, owms, owms_macro, opamp), a task file (my_task.yaml), log, or "
                                "a plug-in's benchmark (e.g. serial)")
    p.add_argument("--json", help="write the results as JSON (and a PNG of objective vs queries beside it)")
    p.add_argument("--quick", action="store_true", help="the task's smaller version (its quick: section)")
    p.add_argument("--rows", type=int, default=20000, help="log benchmark: rows to append")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="change the problem for every method (repeatable): blackbox.*, objective.*, optimizer.* (for "
                        "the methods whose type has the key), or surrogate.* for every surrogate method")
    p.add_argument("--seeds", type=int, metavar="N", help="run seed sets 0..N-1 instead of the task's")
    p.add_argument("--methods", metavar="A,B", help="run only these methods of the task")
    p.add_argument("--log-dir", metavar="DIR",
                   help="write every run's HDF5 query log into DIR; a run whose log is already there continues "
                        "from it (and from its checkpoint: a killed BoTorch run keeps its hours of work)")
    p.add_argument("--runs-dir", metavar="DIR",
                   help="keep each finished run in DIR and reuse the runs already there with the same config, so "
                        "an interrupted benchmark resumes (default with --json: JSON's name + .runs/)")
    p.add_argument("--kept-only", action="store_true",
                   help="run nothing: report the runs kept in --runs-dir so far (a long benchmark still running or "
                        "stopped), each method over the seed sets it has finished")
    _executor_flags(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("sweep", help="tasks x methods x seed sets x config variants from a grid file, in one pool")
    p.add_argument("grid", help="grid YAML (tasks, methods, seeds, variants; see hil/bench/sweep.py)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: sweeps/<grid name>/); rerun to resume")
    _executor_flags(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_sweep)
    return parser


def _executor_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--executor", choices=["process", "serial", "ray"], default="process",
                   help="where the runs execute: parallel local processes (default), this process, or Ray")
    p.add_argument("--jobs", type=int, metavar="N", help="parallel processes (default: one per CPU core)")
    p.add_argument("--address", metavar="HOST:PORT", help="with --executor ray: join this Ray cluster "
                                                           "(default: start a local Ray instance)")


def _cmd_sweep(args: argparse.Namespace) -> int:
    from hil.bench.sweep import run_sweep

    run_sweep(args.grid, out_dir=args.out, progress=not args.no_progress, executor=args.executor,
              workers=args.jobs, address=args.address)
    return 0


def _help(parser: argparse.ArgumentParser) -> int:
    """A command given without its sub-command: print the help (what can follow) and fail."""
    parser.print_help(sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):  # plain `hil`: what it can do
        parser.print_help()
        return 0
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
