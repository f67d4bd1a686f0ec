"""otwrapy 0.13 + openturns: the beam case on the same solver binary and design
as otwrap's beam bench, with otwrapy's local backends at 2 CPUs.

    bench/.venv/bin/python bench/peers/otwrapy_beam.py --points 200 --runs 5 \
        [--backends serial,multiprocessing,...] [--no-shell] [--json FILE]

Each backend gets one Parallelizer(Wrapper(), backend, n_cpus=2, verbosity=False)
(n_cpus given explicitly: otwrapy's default -1 means 1 CPU on this machine), a
warm-up call of 20 points, then `runs` timed calls of `points` points. Every call
uses points not seen before by that Parallelizer (it memoizes). Prints the
median per backend; with --json, appends one JSON object per backend (same
fields as the Rust benches' OTWRAP_BENCH_JSON records).
"""

import argparse
import json
import os
import statistics
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
# Worker processes started elsewhere (dask workers in SLURM jobs) import the
# wrapper module too.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in [HERE, os.environ.get("PYTHONPATH", "")] if p)

import openturns as ot  # noqa: E402
import otwrapy as otw  # noqa: E402

import beam_wrapper  # noqa: E402

LOCAL_BACKENDS = [
    "serial",
    "multiprocessing",
    "joblib",
    "pathos",
    "concurrent/thread",
    "concurrent/process",
]


def make_model(backend, n_cpus, shell):
    kwargs = {}
    if backend == "dask/slurm":
        # One SLURM job running n_cpus single-thread dask workers on the local
        # single-node SLURM (SLURM_CONF from the environment), as otwrapy sets it up.
        kwargs["slurmcluster_kw"] = {
            "queue": os.environ.get("BENCH_SLURM_PARTITION", "debug"),
            "walltime": "01:00:00",
            "memory": "900MB",
            "local_directory": "/tmp",
            "log_directory": os.environ.get("BENCH_DASK_LOGS", "/tmp/otwrap-bench-dask-logs"),
            "scheduler_options": {"host": "127.0.0.1", "dashboard_address": None},
        }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return otw.Parallelizer(
            beam_wrapper.Wrapper(shell=shell), backend=backend, n_cpus=n_cpus, verbosity=False, **kwargs
        )


def close(model):
    client = getattr(model, "dask_client", None)
    cluster = getattr(model, "dask_cluster", None)
    if client is not None:
        client.close()
    if cluster is not None:
        cluster.close()


def bench_backend(backend, n, runs, n_cpus, shell):
    start = time.perf_counter()
    model = make_model(backend, n_cpus, shell)
    if backend == "dask/slurm":
        model.dask_client.wait_for_workers(n_cpus, timeout=120)
    startup = time.perf_counter() - start
    try:
        warm = beam_wrapper.points(20, offset=1000.0)
        beam_wrapper.check(warm, model(ot.Sample(warm)))
        times = []
        for r in range(runs):
            xs = beam_wrapper.points(n, offset=0.5 * r)
            X = ot.Sample(xs)
            t0 = time.perf_counter()
            Y = model(X)
            times.append(time.perf_counter() - t0)
            beam_wrapper.check(xs, Y)
    finally:
        close(model)
    return statistics.median(times), times, startup


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--n-cpus", type=int, default=2)
    parser.add_argument("--backends", default=",".join(LOCAL_BACKENDS))
    parser.add_argument("--no-shell", action="store_true", help="run the solver without a shell")
    parser.add_argument("--json", default=os.environ.get("OTWRAP_BENCH_JSON"),
                        help="append JSON lines to this file (default: $OTWRAP_BENCH_JSON)")
    args = parser.parse_args()
    if not os.path.isfile(beam_wrapper.SOLVER):
        sys.exit(f"no solver at {beam_wrapper.SOLVER}: cargo build --release -p beam-solver")
    shell = not args.no_shell
    how = "through a shell" if shell else "without a shell"
    print(
        f"otwrapy {otw.__version__} / openturns {ot.__version__}: beam, {args.points} points, "
        f"n_cpus={args.n_cpus}, solver {how}, median of {args.runs} runs"
    )
    for backend in [b for b in args.backends.split(",") if b]:
        try:
            med, times, startup = bench_backend(backend, args.points, args.runs, args.n_cpus, shell)
        except Exception as e:  # a backend that does not work here is reported, not fatal
            print(f"  {backend:<20} failed: {type(e).__name__}: {e}")
            if args.json:
                with open(args.json, "a") as f:
                    rec = {"bench": "otwrapy", "name": f"otwrapy {backend}", "backend": backend,
                           "points": args.points, "error": f"{type(e).__name__}: {e}", "shell": shell}
                    f.write(json.dumps(rec) + "\n")
            continue
        workers = 1 if backend == "serial" else args.n_cpus
        print(
            f"  {backend:<20} {med:8.3f} s  {med / args.points * 1e3:7.3f} ms/eval  "
            f"{args.points / med:8.1f} eval/s" + (f"  (start-up {startup:.2f} s)" if startup > 0.5 else "")
        )
        if args.json:
            rec = {
                "bench": "otwrapy",
                "name": f"otwrapy {backend}" + ("" if shell else " (no shell)"),
                "backend": backend,
                "points": args.points,
                "runs": args.runs,
                "median_s": med,
                "per_point_us": med / args.points * 1e6,
                "points_per_s": args.points / med,
                "times_s": times,
                "workers": workers,
                "shell": shell,
                "startup_s": startup,
                "otwrapy": otw.__version__,
                "openturns": ot.__version__,
            }
            with open(args.json, "a") as f:
                f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
