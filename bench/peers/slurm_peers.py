"""The SLURM peers on the same local SLURM as otwrap's slurm bench
(SLURM_CONF from the environment, partition debug):

    bench/.venv/bin/python bench/peers/slurm_peers.py submitit --kind trivial --points 1000
    bench/.venv/bin/python bench/peers/slurm_peers.py submitit --kind beam --points 200
    bench/.venv/bin/python bench/peers/slurm_peers.py sbatch-array --points 1000
    bench/.venv/bin/python bench/peers/slurm_peers.py dask-jobqueue --kind trivial --points 1000 --jobs 8

- submitit: AutoExecutor(cluster="slurm").map_array(fn, xs), then
  [job.result() for job in jobs] (one array element per point, as submitit does).
- sbatch-array: `sbatch --array=0-(N-1) --wrap 'touch DIR/$SLURM_ARRAY_TASK_ID'`,
  then `squeue -j ID` every 0.25 s until the job has left the queue: the bare
  hand-written limit of "one SLURM task per point".
- dask-jobqueue: SLURMCluster(cores=1, processes=1), scale(jobs=J),
  wait_for_workers(J) (the start-up), then client.gather(client.map(fn, xs)).

The wall time of each covers everything from the first SLURM call to the last
result in hand. Every sbatch/squeue/sacct/scancel/srun/sinfo/scontrol call made
(by the peer or inside its jobs) is counted through shims put first on PATH.
With --json FILE, appends one JSON object per run (fields as the Rust
benches' OTWRAP_BENCH_JSON records).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in [HERE, os.environ.get("PYTHONPATH", "")] if p)

SLURM_COMMANDS = ["sbatch", "squeue", "sacct", "scancel", "srun", "sinfo", "scontrol"]


def trivial(x):
    return 2.0 * x + 1.0


def beam(x):
    import beam_wrapper

    return beam_wrapper.evaluate(x, shell=False)


class CallCounter:
    """Shims for the SLURM client commands, first on PATH, counting calls."""

    def __init__(self, root):
        self.dir = os.path.join(root, "shims")
        self.log = os.path.join(root, "calls.log")
        os.makedirs(self.dir, exist_ok=True)
        for cmd in SLURM_COMMANDS:
            real = shutil.which(cmd)
            if real is None:
                continue
            path = os.path.join(self.dir, cmd)
            with open(path, "w") as f:
                f.write(f'#!/bin/sh\necho {cmd} >> "{self.log}"\nexec "{real}" "$@"\n')
            os.chmod(path, 0o755)
        os.environ["PATH"] = self.dir + os.pathsep + os.environ["PATH"]

    def reset(self):
        open(self.log, "w").close()

    def counts(self):
        out = {}
        try:
            with open(self.log) as f:
                for line in f:
                    out[line.strip()] = out.get(line.strip(), 0) + 1
        except FileNotFoundError:
            pass
        return out


def squeue_ids():
    out = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=True)
    return [line for line in out.stdout.split() if line]


def wait_idle(timeout=180):
    """Waits until no job is queued (other users of the cluster); returns the
    seconds waited and whether the queue emptied."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if not squeue_ids():
            return time.perf_counter() - start, True
        time.sleep(1)
    return time.perf_counter() - start, False


def inputs(kind, n):
    if kind == "trivial":
        return [float(i) for i in range(n)], trivial
    import beam_wrapper

    return beam_wrapper.points(n), beam


def check(kind, xs, ys):
    if kind == "trivial":
        assert ys == [trivial(x) for x in xs]
    else:
        import beam_wrapper

        beam_wrapper.check(xs, ys)


def run_submitit(args, work):
    import submitit

    xs, fn = inputs(args.kind, args.points)
    executor = submitit.AutoExecutor(folder=os.path.join(work, "submitit", "%j"), cluster="slurm")
    executor.update_parameters(slurm_partition=args.partition, timeout_min=60, cpus_per_task=1)
    start = time.perf_counter()
    jobs = executor.map_array(fn, xs)
    submitted = time.perf_counter() - start
    ys = [job.result() for job in jobs]
    total = time.perf_counter() - start
    check(args.kind, xs, ys)
    return total, {"submit_s": submitted, "array_parallelism": 256}


def run_sbatch_array(args, work):
    out_dir = os.path.join(work, "array-out")
    os.makedirs(out_dir)
    n = args.points
    start_wall = time.time()
    start = time.perf_counter()
    sub = subprocess.run(
        ["sbatch", "--parsable", f"--array=0-{n - 1}", "-p", args.partition, "-o", "/dev/null",
         "-J", "bench-array", f"--wrap=touch {out_dir}/$SLURM_ARRAY_TASK_ID"],
        capture_output=True, text=True, check=True)
    job = sub.stdout.strip().split(";")[0]
    submitted = time.perf_counter() - start
    polls = 0
    while True:
        polls += 1
        q = subprocess.run(["squeue", "-h", "-j", job, "-o", "%i"], capture_output=True, text=True)
        if q.returncode == 0 and not q.stdout.strip():
            break
        time.sleep(0.25)
    total = time.perf_counter() - start
    files = os.listdir(out_dir)
    if len(files) != n:
        raise RuntimeError(f"{len(files)} of {n} array tasks wrote their file")
    last = max(os.stat(os.path.join(out_dir, f)).st_mtime for f in files) - start_wall
    return total, {"submit_s": submitted, "last_written_s": last, "noticed_after_s": total - last,
                   "poll_interval_s": 0.25, "polls": polls}


def run_dask_jobqueue(args, work):
    import logging

    from dask.distributed import Client
    from dask_jobqueue import SLURMCluster

    logging.getLogger("distributed").setLevel(logging.ERROR)
    xs, fn = inputs(args.kind, args.points)
    start = time.perf_counter()
    cluster = SLURMCluster(
        queue=args.partition, cores=1, processes=1, memory="900MB", walltime="01:00:00",
        local_directory=os.path.join(work, "dask"), log_directory=os.path.join(work, "dask-logs"),
        scheduler_options={"host": "127.0.0.1", "dashboard_address": None},
    )
    client = Client(cluster)
    try:
        cluster.scale(jobs=args.jobs)
        client.wait_for_workers(args.jobs, timeout=300)
        up = time.perf_counter() - start
        ys = client.gather(client.map(fn, xs, pure=False))
        total = time.perf_counter() - start
    finally:
        client.close()
        cluster.close()
    check(args.kind, xs, list(ys))
    return total, {"start_s": up, "compute_s": total - up, "jobs": args.jobs}


NAMES = {
    "submitit": "submitit {version} map_array",
    "sbatch-array": "bare sbatch --array (squeue every 0.25 s)",
    "dask-jobqueue": "dask-jobqueue {version} SLURMCluster ({jobs} jobs), start + compute",
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("peer", choices=sorted(NAMES))
    parser.add_argument("--kind", choices=["trivial", "beam"], default="trivial")
    parser.add_argument("--points", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=8, help="dask-jobqueue worker jobs")
    parser.add_argument("--partition", default="debug")
    parser.add_argument("--json", default=os.environ.get("OTWRAP_BENCH_JSON"),
                        help="append JSON lines to this file (default: $OTWRAP_BENCH_JSON)")
    args = parser.parse_args()
    if not os.environ.get("SLURM_CONF"):
        sys.exit("SLURM_CONF is not set (source /tmp/otwrap-services/slurm/env)")
    version = ""
    if args.peer == "submitit":
        import submitit

        version = submitit.__version__
    elif args.peer == "dask-jobqueue":
        import dask_jobqueue

        version = dask_jobqueue.__version__
    name = NAMES[args.peer].format(version=version, jobs=args.jobs)
    run = {"submitit": run_submitit, "sbatch-array": run_sbatch_array, "dask-jobqueue": run_dask_jobqueue}[args.peer]
    with tempfile.TemporaryDirectory(prefix="otwrap-bench-slurm-peer-") as root:
        counter = CallCounter(root)
        for r in range(args.runs):
            waited, idle = wait_idle()
            work = os.path.join(root, f"run{r}")
            os.makedirs(work)
            counter.reset()
            try:
                secs, extra = run(args, work)
            except Exception as e:
                print(f"{name}, {args.points} {args.kind} points: failed: {type(e).__name__}: {e}")
                if args.json:
                    with open(args.json, "a") as f:
                        f.write(json.dumps({"bench": "slurm-peers", "name": name, "kind": args.kind,
                                            "points": args.points, "error": f"{type(e).__name__}: {e}"}) + "\n")
                continue
            calls = counter.counts()
            print(
                f"{name}, {args.points} {args.kind} points: {secs:8.3f} s  {args.points / secs:8.1f} points/s  "
                + " ".join(f"{k} {v}" for k, v in sorted(calls.items()))
                + "".join(f"  {k} {v:.2f}" if isinstance(v, float) else f"  {k} {v}" for k, v in extra.items())
            )
            if args.json:
                rec = {"bench": "slurm-peers", "name": name, "peer": args.peer, "kind": args.kind,
                       "points": args.points, "runs": 1, "median_s": secs,
                       "per_point_us": secs / args.points * 1e6, "points_per_s": args.points / secs,
                       "calls": calls, "waited_for_idle_queue_s": waited, "queue_was_idle": idle}
                rec.update(extra)
                with open(args.json, "a") as f:
                    f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
