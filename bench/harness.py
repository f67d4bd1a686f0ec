#!/usr/bin/env python3
"""The benchmark harness of issue 8, run by bench/run.sh (which builds
everything and creates bench/.venv first):

    bench/run.sh [--quick] [--only NAME[,NAME...]] [--runs N] [--slow-runs N]

Runs each workload (the Rust benches in benches/, the Python peers in
bench/peers/), collects their JSON lines (OTWRAP_BENCH_JSON), prints medians
and ratios (to the hand-written limit and to the peers, measured in the same
run) and writes bench/results.json; `bench/report.py` turns that file into
the markdown of BENCHMARKS.md.

Slow workloads (beam, ssh, slurm) run in rounds: every round runs otwrap, the
limit and the peers one after the other, and the median is taken over the
rounds, so that a burst of load from elsewhere on this shared machine hits
them alike. Fast workloads run their repetitions inside the bench.

Standard library only.
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
PEERS = os.path.join(BENCH, "peers")
VENV_PY = os.path.join(BENCH, ".venv", "bin", "python")
SERVICES = os.environ.get("OTWRAP_TEST_SERVICES_DIR") or "/tmp/otwrap-services"
RUST_BENCHES = ["overhead", "cpu", "beam", "cache", "ssh", "slurm", "memory"]

# Sizes: (full, quick).
SIZES = {
    "inprocess_points": (1_000_000, 100_000),
    "cpu_points": (200, 40),
    "beam_points": ([200, 2000], [50, 200]),
    "cache_points": (100_000, 10_000),
    "ssh_points": (10_000, 1000),
    "ssh_beam_points": (1000, 100),
    "slurm_trivial": (1000, 100),
    "slurm_beam": (200, 20),
    "memory_points": (100_000, 10_000),
    "growth_points": ([1000, 10_000, 100_000], [1000, 10_000]),
    "growth_memory_points": ([10_000, 100_000, 1_000_000], [10_000, 100_000]),
}


# ---------------------------------------------------------------- machine


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return [float(x) for x in f.read().split()[:3]]
    except OSError:
        return None


def cpu_pressure():
    """/proc/pressure/cpu 'some avg10' and 'avg60': the share of time some
    runnable task waited for a CPU (other users' load on a shared machine)."""
    try:
        with open("/proc/pressure/cpu") as f:
            for line in f:
                if line.startswith("some"):
                    fields = dict(kv.split("=") for kv in line.split()[1:])
                    return {"avg10": float(fields["avg10"]), "avg60": float(fields["avg60"])}
    except (OSError, ValueError, KeyError):
        pass
    return None


def output(argv, **kw):
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=True, **kw).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def machine():
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gib = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    os_name = None
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    os_name = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return {
        "nproc": int(output(["nproc"]) or os.cpu_count() or 0),
        "cpu_model": cpu,
        "kernel": platform.release(),
        "os": os_name,
        "memory_gib": mem_gib,
        "rustc": output(["rustc", "-V"]),
        "python": platform.python_version(),
        "hostname": platform.node(),
    }


def git_state():
    commit = output(["git", "rev-parse", "HEAD"], cwd=ROOT)
    try:
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                 capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        changed = ""
    return {
        "commit": commit,
        "dirty": bool(changed.strip()),
        "modified": [line[3:] for line in changed.splitlines() if len(line) > 3],
    }


# ---------------------------------------------------------------- services


def read_env(path):
    out = {}
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#") and "=" in line:
                    k, v = line.split("=", 1)
                    out[k.strip()] = v.strip()
    except OSError:
        return None
    return out


def alive(pidfile):
    try:
        with open(pidfile) as f:
            pid = int(f.read().strip())
        return os.path.exists(f"/proc/{pid}")
    except (OSError, ValueError):
        return False


def service_status(name):
    """(env dict or None, reason)."""
    d = os.path.join(SERVICES, name)
    env = read_env(os.path.join(d, "env"))
    if env is None:
        return None, f"no {d}/env"
    if name == "ssh":
        hosts = [h for h in env.get("OTWRAP_TEST_SSH_HOSTS", "").split(",") if h]
        dead = [h for h in hosts if not alive(os.path.join(d, f"{h}.pid"))]
        if not hosts or dead:
            return None, f"sshd not alive on {', '.join(dead) or 'any host'}"
    else:
        dead = [p for p in ["munged", "slurmctld", "slurmd"] if not alive(os.path.join(d, f"{p}.pid"))]
        if dead:
            return None, f"{', '.join(dead)} not alive"
    return env, "up (reused)"


def ensure_services(names, log):
    """Reuses running services; starts them with scripts/services/up.sh only
    when one is not up (up.sh restarts everything: never while it runs)."""
    status = {n: service_status(n) for n in names}
    if any(env is None for env, _ in status.values()):
        up = os.path.join(ROOT, "scripts", "services", "up.sh")
        missing = [n for n, (env, _) in status.items() if env is None]
        if os.geteuid() == 0 and os.path.isfile(up):
            log(f"services {', '.join(missing)} not up: starting them with scripts/services/up.sh")
            subprocess.run(["bash", up], cwd=ROOT)
            status = {n: service_status(n) for n in names}
            for n in missing:
                if status[n][0] is not None:
                    status[n] = (status[n][0], "started by bench/run.sh (scripts/services/up.sh)")
        else:
            log(f"services {', '.join(missing)} not up and cannot be started here (needs root)")
    return status


# ---------------------------------------------------------------- running


def bench_executables():
    """target name -> path of the release bench binary (already built)."""
    argv = ["cargo", "bench", "--no-run", "--message-format=json", "-p", "otwrap"]
    for b in RUST_BENCHES:
        argv += ["--bench", b]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    exes = {}
    for line in proc.stdout.splitlines():
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if msg.get("reason") == "compiler-artifact" and msg.get("executable"):
            if "bench" in msg["target"]["kind"]:
                exes[msg["target"]["name"]] = msg["executable"]
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit("cargo bench --no-run failed (build with bench/run.sh first)")
    return exes


class Step:
    """One command of a workload: a Rust bench binary or a Python peer."""

    def __init__(self, label, argv, env, command):
        self.label = label
        self.argv = argv
        self.env = env
        self.command = command  # how anyone reproduces it


def rust_step(ctx, bench, env, label=None):
    env = {k: str(v) for k, v in env.items()}
    cmd = " ".join(f"{k}={v}" for k, v in env.items()) + f" cargo bench --bench {bench}"
    return Step(label or bench, [ctx.exes[bench], "--bench"], env, cmd.strip())


def py_step(label, script, args, env=None):
    path = os.path.join(PEERS, script)
    cmd = "bench/.venv/bin/python " + os.path.relpath(path, ROOT) + " " + " ".join(shlex.quote(a) for a in args)
    return Step(label, [VENV_PY, path] + args, env or {}, cmd)


def run_step(step, round_no, log, log_file):
    fd, json_path = tempfile.mkstemp(prefix="otwrap-bench-", suffix=".jsonl")
    os.close(fd)
    env = dict(os.environ)
    env.update(step.env)
    env["OTWRAP_BENCH_JSON"] = json_path
    log(f"  $ {step.command}")
    start = time.perf_counter()
    try:
        proc = subprocess.Popen(step.argv, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            log_file.write(line)
            # dask's log lines and submitit's sacct warnings go to the log file only
            if (not line.startswith("20") or " - " not in line[:40]) and "submitit WARNING" not in line \
                    and "Bypassing sacct error" not in line and "accounting storage is disabled" not in line:
                print("    | " + line.rstrip(), flush=True)
        rc = proc.wait()
        if rc != 0:
            log(f"    ! exit status {rc} after {time.perf_counter() - start:.1f} s")
        records = []
        with open(json_path) as f:
            for line in f:
                line = line.strip()
                if line:
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    rec["command"] = step.command
                    rec["round"] = round_no
                    records.append(rec)
        return records, rc
    finally:
        os.unlink(json_path)


def key_of(rec):
    return (rec.get("bench"), rec.get("name"), rec.get("points"), rec.get("kind"))


def aggregate(records):
    """Groups the records of all rounds: median over the rounds' medians."""
    groups = {}
    for rec in records:
        groups.setdefault(key_of(rec), []).append(rec)
    out = {}
    for key, recs in groups.items():
        ok = [r for r in recs if r.get("median_s") is not None and "error" not in r]
        last = dict((ok or recs)[-1])
        last.pop("round", None)
        if ok:
            samples = [r["median_s"] for r in ok]
            med = statistics.median(samples)
            pts = last.get("points") or 0
            last.update({
                "median_s": med,
                "samples_s": samples,
                "by_round": {str(r.get("round", 0)): r["median_s"] for r in ok},
                "runs": sum(r.get("runs", 1) for r in ok),
                "rounds": len(ok),
                "per_point_us": med * 1e6 / pts if pts else None,
                "points_per_s": pts / med if med > 0 else None,
            })
            # Medians of the numeric extras too (speed-ups, hits/s, ...).
            for field in ["speedup", "cores_obtained", "hits_per_s", "added_us_per_point", "start_s", "compute_s",
                          "last_written_s", "noticed_after_s", "startup_s", "vmhwm_kb",
                          "above_inputs_kb", "bytes_per_point_above_inputs"]:
                vals = [r[field] for r in ok if isinstance(r.get(field), (int, float))]
                if vals:
                    last[field] = statistics.median(vals)
        else:
            last["median_s"] = None
        out[key] = last
    return out


class Results:
    """Aggregated records of one workload, looked up by bench and name."""

    def __init__(self, agg):
        self.agg = agg

    def get(self, bench, name, points=None, kind=None):
        for (b, n, p, k), rec in self.agg.items():
            if b == bench and n == name and (points is None or p == points) and (kind is None or k == kind):
                return rec
        return None

    def find(self, bench, pred):
        return [rec for (b, *_), rec in self.agg.items() if b == bench and pred(rec)]


def paired(f, *recs):
    """Median over the rounds of f(times of `recs` in that round): ratios
    measured in the same round, so that load that changes from round to
    round cancels out. None when a record is missing."""
    if any(r is None or not r.get("by_round") for r in recs):
        return None
    rounds = set.intersection(*(set(r["by_round"]) for r in recs))
    vals = [f(*(r["by_round"][k] for r in recs)) for k in sorted(rounds)]
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def paired_best(f, rec, peers):
    """Median over the rounds of f(time of rec, time of the fastest peer of
    that round)."""
    peers = [p for p in peers if p.get("by_round")]
    if rec is None or not rec.get("by_round") or not peers:
        return None
    vals = []
    for k, t in rec["by_round"].items():
        times = [p["by_round"][k] for p in peers if k in p["by_round"]]
        if times:
            vals.append(f(t, min(times)))
    return statistics.median(vals) if vals else None


def row(rec, variant=None, ratio=None, ratio_to=None, **extra):
    if rec is None:
        return None
    r = {
        "variant": variant or rec.get("name"),
        "bench": rec.get("bench"),
        "command": rec.get("command"),
        "points": rec.get("points"),
        "runs": rec.get("runs"),
        "rounds": rec.get("rounds"),
        "median": rec.get("median_s"),
        "unit": "s",
        "samples": rec.get("samples_s"),
        "per_point_us": rec.get("per_point_us"),
        "points_per_s": rec.get("points_per_s"),
    }
    if "error" in rec:
        r["error"] = rec["error"]
    if ratio is not None:
        r["ratio"] = ratio
        r["ratio_to"] = ratio_to
    for k in ["workers", "speedup", "cores_obtained", "hits_per_s", "added_us_per_point", "calls", "start_s", "compute_s",
              "last_written_s", "noticed_after_s", "startup_s", "vmhwm_kb", "above_inputs_kb",
              "bytes_per_point_above_inputs", "slots", "hosts", "shell", "backend", "peer", "kind",
              "tasks", "points_per_task"]:
        if k in rec:
            r[k] = rec[k]
    r.update(extra)
    return r


def target(what, value, goal, met, display, bound=None):
    t = {"target": what, "value": value, "goal": goal, "met": bool(met) if met is not None else None,
         "display": display}
    if bound:
        t["bound"] = bound
    return t


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def t_of(rec):
    return rec.get("median_s") if rec else None


# ---------------------------------------------------------------- workloads


class Workload:
    def __init__(self, name, title, rounds, steps, analyse, needs=(), notes=()):
        self.name = name
        self.title = title
        self.rounds = rounds
        self.steps = steps  # list of Step, run in this order every round
        self.analyse = analyse  # Results -> (rows, targets, notes)
        self.needs = needs
        self.notes = list(notes)


def size(ctx, key):
    full, quick = SIZES[key]
    return quick if ctx.quick else full


def w_inprocess(ctx):
    n = size(ctx, "inprocess_points")
    steps = [rust_step(ctx, "overhead", {"OTWRAP_BENCH_POINTS": n, "OTWRAP_BENCH_RUNS": ctx.runs,
                                         "OTWRAP_BENCH_PROCESSES": 0})]

    def analyse(res):
        bare = res.get("overhead", "bare rayon par_iter", n)
        rows, targets = [], []
        for name in ["bare rayon par_iter", "otwrap rayon map", "otwrap rayon for_each", "otwrap serial map"]:
            rec = res.get("overhead", name, n)
            rows.append(row(rec, ratio=ratio(t_of(bare), t_of(rec)), ratio_to="fraction of bare rayon",
                            overhead_us_per_point=((t_of(rec) - t_of(bare)) * 1e6 / n) if rec and bare else None))
        m = res.get("overhead", "otwrap rayon map", n)
        frac = ratio(t_of(bare), t_of(m))
        over = (t_of(m) - t_of(bare)) * 1e6 / n if m and bare else None
        targets.append(target("otwrap rayon map at >= 95% of a bare rayon loop", frac, 0.95,
                              frac is not None and frac >= 0.95,
                              f"{frac * 100:.1f}% of bare" if frac else "n/a",
                              bound=(f"needs {1 / frac:.2f}x less time" if frac and frac < 0.95 else None)))
        targets.append(target("overhead per point under 1 µs", over, 1.0, over is not None and over < 1.0,
                              f"{over:.3f} µs/point" if over is not None else "n/a"))
        return [r for r in rows if r], targets, []

    return Workload("inprocess", f"Trivial in-process model ({n:,} points) vs a bare rayon loop", 1, steps, analyse)


def w_cpu(ctx):
    n = size(ctx, "cpu_points")
    steps = [rust_step(ctx, "cpu", {"OTWRAP_BENCH_POINTS": n, "OTWRAP_BENCH_RUNS": ctx.runs})]

    def analyse(res):
        rows = []
        for name in ["serial loop (no otwrap)", "bare rayon par_iter x2", "otwrap rayon x2", "otwrap processes x2"]:
            rec = res.get("cpu", name, n)
            rows.append(row(rec, ratio=rec.get("speedup") if rec else None, ratio_to="speed-up over serial"))
        o = res.get("cpu", "otwrap rayon x2", n)
        b = res.get("cpu", "bare rayon par_iter x2", n)
        p = res.get("cpu", "otwrap processes x2", n)
        s = o.get("speedup") if o else None
        bs = b.get("speedup") if b else None
        oc = o.get("cores_obtained") if o else None
        bc = b.get("cores_obtained") if b else None
        cores = f"; cores obtained: otwrap {oc:.2f}, bare {bc:.2f}" if oc and bc else ""
        targets = [target("speed-up >= 1.9 on 2 cores (otwrap rayon)", s, 1.9, s is not None and s >= 1.9,
                          f"{s:.2f}x (bare rayon {bs:.2f}x{cores})" if s and bs else "n/a",
                          bound=(f"the bare rayon loop reaches {bs:.2f}x in the same run: the CPU share "
                                 "the scheduler gives this session bounds both" if s and bs and s < 1.9
                                 else None))]
        if p and p.get("speedup"):
            ps = p["speedup"]
            targets.append(target("speed-up >= 1.9 on 2 cores (otwrap processes)", ps, 1.9, ps >= 1.9,
                                  f"{ps:.2f}x"))
        return [r for r in rows if r], targets, []

    return Workload("cpu", f"CPU-heavy model (~10 ms a point, {n} points): speed-up over serial on 2 cores",
                    1, steps, analyse)


def w_beam(ctx, slurm_env):
    sizes = size(ctx, "beam_points")
    backends = "serial,multiprocessing,joblib,pathos,concurrent/thread,concurrent/process"
    steps = []
    for n in sizes:
        steps.append(rust_step(ctx, "beam", {"OTWRAP_BENCH_POINTS": n, "OTWRAP_BENCH_RUNS": 1},
                               label=f"beam {n}"))
    for n in sizes:
        b = backends + (",dask/slurm" if slurm_env else "")
        env = {"SLURM_CONF": slurm_env["SLURM_CONF"]} if slurm_env else {}
        steps.append(py_step(f"otwrapy {n}", "otwrapy_beam.py",
                             ["--points", str(n), "--runs", "1", "--backends", b], env))
        steps.append(py_step(f"otwrapy {n} no shell", "otwrapy_beam.py",
                             ["--points", str(n), "--runs", "1", "--backends", backends, "--no-shell"]))
    notes = []
    if not slurm_env:
        notes.append("otwrapy's dask/slurm backend skipped: SLURM not up")

    def analyse(res):
        rows, targets = [], []
        for n in sizes:
            bare = res.get("beam", "bare solver run, serial", n)
            hs = res.get("beam", "hand-written loop, serial", n)
            os_ = res.get("beam", "otwrap, serial backend", n)
            hr = res.get("beam", "hand-written loop, rayon x2", n)
            orr = res.get("beam", "otwrap, rayon backend x2", n)
            rows.append(row(bare, ratio=None))
            per_ms = (lambda a, b, n=n: (a - b) * 1e3 / n)
            rows.append(row(hs, ratio=None, added_ms_over_bare_solver=paired(per_ms, hs, bare)))
            rows.append(row(os_, ratio=paired(lambda a, b: a / b, hs, os_), ratio_to="fraction of hand-written serial",
                            added_ms_over_bare_solver=paired(per_ms, os_, bare),
                            added_ms_over_hand=paired(per_ms, os_, hs)))
            rows.append(row(hr, ratio=None))
            rows.append(row(orr, ratio=paired(lambda a, b: a / b, hr, orr), ratio_to="fraction of hand-written rayon"))
            peers = res.find("otwrapy", lambda r, n=n: r.get("points") == n)
            peers.sort(key=lambda r: (not r.get("shell", True), r.get("name")))
            for p in peers:
                rows.append(row(p, ratio=paired(lambda a, b: a / b, p, orr),
                                ratio_to="otwrap rayon x2 eval/s / peer eval/s"))
            over = paired(per_ms, os_, bare)
            over_hand = paired(per_ms, os_, hs)
            hand_over = paired(per_ms, hs, bare)
            targets.append(target(f"{n} points: otwrap adds < 0.1 ms per evaluation over the bare solver run (serial)",
                                  over, 0.1, over is not None and over < 0.1,
                                  f"{over:+.3f} ms (of which the hand-written loop's own work dir, template and "
                                  f"parse: {hand_over:+.3f} ms; otwrap over the hand-written loop: {over_hand:+.3f} ms)"
                                  if None not in (over, over_hand, hand_over) else "n/a"))
            frac = paired(lambda a, b: a / b, hr, orr)
            targets.append(target(f"{n} points: otwrap rayon x2 at >= 95% of the hand-written rayon loop", frac, 0.95,
                                  frac is not None and frac >= 0.95,
                                  f"{frac * 100:.1f}% (median of the rounds' ratios)" if frac else "n/a"))
            for shell, label in [(True, "as shipped (solver through a shell)"), (False, "solver without a shell")]:
                ok = [p for p in peers if p.get("shell", True) == shell and p.get("median_s")
                      and p.get("backend") != "serial"]
                if not ok:
                    continue
                best = min(ok, key=lambda p: p["median_s"])
                r = paired_best(lambda t, best_t: best_t / t, orr, ok)
                targets.append(target(
                    f"{n} points: otwrap >= 1.5x the eval/s of otwrapy's best backend at 2 CPUs, {label}",
                    r, 1.5, r is not None and r >= 1.5,
                    f"{r:.2f}x (median over rounds of otwrap / that round's best backend; best overall: "
                    f"{best.get('backend')}, {best.get('points_per_s', 0):.0f} eval/s; "
                    f"otwrap {orr.get('points_per_s', 0):.0f} eval/s)" if r and orr else "n/a"))
        return [r for r in rows if r], targets, []

    return Workload("beam", "Beam external code: otwrap vs the hand-written loop, the bare solver and otwrapy",
                    ctx.slow_runs, steps, analyse, notes=notes)


def w_cache(ctx):
    n = size(ctx, "cache_points")
    steps = [rust_step(ctx, "cache", {"OTWRAP_BENCH_POINTS": n, "OTWRAP_BENCH_RUNS": ctx.runs}),
             py_step("otwrapy cache", "otwrapy_cache.py", ["--points", str(n), "--runs", str(ctx.runs)])]

    def analyse(res):
        rows = []
        plain = res.get("cache", "no cache", n)
        rows.append(row(plain))
        for name in ["disk (sled), no hit", "disk (sled), all hits", "memory, no hit", "memory, all hits"]:
            rows.append(row(res.get("cache", name, n)))
        peer = res.get("otwrapy-cache", "otwrapy MemoizeFunction, all hits", n)
        disk = res.get("cache", "disk (sled), all hits", n)
        mem = res.get("cache", "memory, all hits", n)
        rows.append(row(res.get("otwrapy-cache", "otwrapy MemoizeFunction, no hit", n)))
        rows.append(row(peer, ratio=ratio(t_of(peer), t_of(mem)), ratio_to="otwrap memory hits/s / peer hits/s",
                        disk_ratio=ratio(t_of(peer), t_of(disk))))
        hits = disk.get("hits_per_s") if disk else None
        targets = [target("fully cached batch (disk): > 500,000 hits per second", hits, 500_000,
                          hits is not None and hits > 500_000, f"{hits:,.0f} hits/s" if hits else "n/a")]
        return [r for r in rows if r], targets, []

    return Workload("cache", f"Fully cached batch ({n:,} points)", 1, steps, analyse)


def w_ssh(ctx, ssh_env):
    n = size(ctx, "ssh_points")
    nb = size(ctx, "ssh_beam_points")
    steps = [rust_step(ctx, "ssh", {"OTWRAP_BENCH_POINTS": n, "OTWRAP_BENCH_BEAM_POINTS": nb,
                                    "OTWRAP_BENCH_RUNS": 1})]

    def analyse(res):
        rows, targets = [], []
        one = None
        for rec in sorted(res.find("ssh", lambda r: r.get("points") == n and r["name"].startswith("trivial")),
                          key=lambda r: (r.get("slots", 0), r.get("hosts", 0))):
            rows.append(row(rec))
            if rec.get("slots") == 1:
                one = rec
        rayon = res.get("ssh", "beam, rayon 2 workers", nb)
        ssh = res.get("ssh", "beam, ssh 1 host x 2 slots", nb)
        rows.append(row(rayon))
        rows.append(row(ssh, ratio=paired(lambda a, b: a / b, rayon, ssh), ratio_to="fraction of rayon"))
        per = one.get("per_point_us") if one else None
        targets.append(target("dispatch overhead under 1 ms per point (1 slot, trivial model)",
                              per / 1e3 if per else None, 1.0, per is not None and per < 1000,
                              f"{per / 1e3:.3f} ms/point" if per else "n/a"))
        return [r for r in rows if r], targets, []

    return Workload("ssh", f"SSH over loopback ({n:,} trivial points, {nb} beam points)", ctx.slow_runs, steps,
                    analyse, needs=("ssh",))


def w_slurm(ctx, slurm_env):
    nt = size(ctx, "slurm_trivial")
    nb = size(ctx, "slurm_beam")
    env = {"SLURM_CONF": slurm_env["SLURM_CONF"]} if slurm_env else {}
    steps = [rust_step(ctx, "slurm", {"OTWRAP_BENCH_TRIVIAL": nt, "OTWRAP_BENCH_BEAM": nb, "OTWRAP_BENCH_RUNS": 1}),
             py_step("sbatch array", "slurm_peers.py", ["sbatch-array", "--points", str(nt)], env),
             py_step("dask-jobqueue trivial", "slurm_peers.py",
                     ["dask-jobqueue", "--kind", "trivial", "--points", str(nt)], env),
             py_step("dask-jobqueue beam", "slurm_peers.py",
                     ["dask-jobqueue", "--kind", "beam", "--points", str(nb)], env),
             py_step("submitit beam", "slurm_peers.py",
                     ["submitit", "--kind", "beam", "--points", str(nb)], env),
             py_step("submitit trivial", "slurm_peers.py",
                     ["submitit", "--kind", "trivial", "--points", str(nt)], env)]

    def analyse(res):
        rows, targets = [], []
        for kind, n in [("trivial", nt), ("beam", nb)]:
            mine = res.find("slurm", lambda r, n=n, kind=kind: r.get("points") == n and r.get("kind") == kind)
            mine.sort(key=lambda r: r["name"])
            default = next((r for r in mine if "default" in r["name"]), None)
            for r in mine:
                rows.append(row(r))
            peers = res.find("slurm-peers", lambda r, n=n, kind=kind: r.get("points") == n and r.get("kind") == kind)
            peers.sort(key=lambda r: r["name"])
            for p in peers:
                rows.append(row(p, ratio=paired(lambda a, b: a / b, p, default),
                                ratio_to="peer time / otwrap (default) time"))
            if kind != "trivial" or default is None:
                continue
            sub = next((p for p in peers if p.get("peer") == "submitit"), None)
            arr = next((p for p in peers if p.get("peer") == "sbatch-array"), None)
            dsk = next((p for p in peers if p.get("peer") == "dask-jobqueue"), None)
            t = t_of(default)
            if dsk and t_of(dsk):
                r = paired(lambda a, b: a / b, dsk, default)
                targets.append(target(f"{n} trivial points in less wall time than dask-jobqueue start + compute",
                                      r, 1.0, r is not None and r > 1,
                                      f"otwrap {t:.2f} s vs {t_of(dsk):.2f} s ({dsk.get('start_s', 0):.2f} s start); "
                                      f"{r:.1f}x"))
            if sub and t_of(sub):
                r = paired(lambda a, b: a / b, sub, default)
                targets.append(target(f"{n} trivial points at least 10x faster than submitit map_array", r, 10.0,
                                      r >= 10, f"{r:.1f}x (otwrap {t:.2f} s, submitit {t_of(sub):.1f} s)"))
            if arr and t_of(arr):
                r = paired(lambda a, b: a / b, arr, default)
                targets.append(target(f"{n} trivial points faster than a bare {n}-task sbatch array", r, 1.0, r > 1,
                                      f"{r:.1f}x (otwrap {t:.2f} s, array {t_of(arr):.1f} s)"))
            lat = default.get("noticed_after_s")
            if lat is not None:
                targets.append(target("finished results noticed within 1 s", lat, 1.0, lat < 1.0,
                                      f"{lat:.2f} s after the last task's write"))
            calls = default.get("calls")
            targets.append(target("sbatch and squeue calls reported", calls, None, calls is not None,
                                  str(calls)))
        return [r for r in rows if r], targets, []

    return Workload("slurm", f"SLURM ({nt:,} trivial points, {nb} beam points; local single-node SLURM, "
                    f"{slurm_env.get('OTWRAP_TEST_SLURM_CPUS', '?') if slurm_env else '?'} CPUs declared)",
                    ctx.slow_runs, steps, analyse, needs=("slurm",))


def w_memory(ctx):
    n = size(ctx, "memory_points")
    steps = [rust_step(ctx, "memory", {"OTWRAP_BENCH_POINTS": n})]

    def analyse(res):
        rows = []
        bare = res.get("memory", "bare rayon par_iter", n)
        for rec in res.find("memory", lambda r: r.get("points") == n):
            rows.append(row(rec, ratio=ratio(rec.get("vmhwm_kb"), bare.get("vmhwm_kb") if bare else None),
                            ratio_to="VmHWM / bare rayon VmHWM"))
        order = ["inputs only", "bare rayon par_iter", "otwrap rayon map", "otwrap serial map",
                 "otwrap processes map (driver)", "otwrap rayon map, disk cache"]
        rows.sort(key=lambda r: order.index(r["variant"]) if r["variant"] in order else 99)
        return rows, [], []

    return Workload("memory", f"Peak memory (VmHWM) of a {n:,}-point batch", 1, steps, analyse)


def w_growth(ctx, ssh_env):
    sizes = size(ctx, "growth_points")
    msizes = size(ctx, "growth_memory_points")
    steps = []
    for n in sizes:
        steps.append(rust_step(ctx, "overhead", {"OTWRAP_BENCH_POINTS": n, "OTWRAP_BENCH_RUNS": ctx.runs},
                               label=f"overhead {n}"))
        steps.append(rust_step(ctx, "cache", {"OTWRAP_BENCH_POINTS": n, "OTWRAP_BENCH_RUNS": ctx.runs},
                               label=f"cache {n}"))
    for n in msizes:
        steps.append(rust_step(ctx, "memory", {"OTWRAP_BENCH_POINTS": n}, label=f"memory {n}"))
    if ssh_env:
        for n in [s for s in sizes if s <= 10_000]:
            steps.append(rust_step(ctx, "ssh", {"OTWRAP_BENCH_POINTS": n, "OTWRAP_BENCH_BEAM_POINTS": 10,
                                                "OTWRAP_BENCH_RUNS": 3}, label=f"ssh {n}"))
    series = [
        ("overhead", "bare rayon par_iter", "per_point_us", "µs/point"),
        ("overhead", "otwrap rayon map", "per_point_us", "µs/point"),
        ("overhead", "otwrap rayon for_each", "per_point_us", "µs/point"),
        ("overhead", "otwrap serial map", "per_point_us", "µs/point"),
        ("overhead", "otwrap processes map", "per_point_us", "µs/point"),
        ("cache", "disk (sled), no hit", "per_point_us", "µs/point"),
        ("cache", "disk (sled), all hits", "per_point_us", "µs/point"),
        ("cache", "memory, all hits", "per_point_us", "µs/point"),
        ("memory", "otwrap rayon map", "bytes_per_point_above_inputs", "bytes/point over inputs"),
        ("memory", "bare rayon par_iter", "bytes_per_point_above_inputs", "bytes/point over inputs"),
        ("memory", "otwrap rayon map, disk cache", "bytes_per_point_above_inputs", "bytes/point over inputs"),
        ("ssh", "trivial, 1 slots on 1 hosts", "per_point_us", "µs/point"),
        ("ssh", "trivial, 4 slots on 2 hosts", "per_point_us", "µs/point"),
    ]

    def analyse(res):
        rows = []
        for bench, name, field, unit in series:
            recs = sorted(res.find(bench, lambda r, name=name: r.get("name") == name), key=lambda r: r["points"])
            if not recs:
                continue
            values = {str(r["points"]): r.get(field) for r in recs}
            vals = [r.get(field) for r in recs if r.get(field)]
            growth = vals[-1] / vals[-2] if len(vals) >= 2 and vals[-2] else None
            rows.append({"variant": f"{bench}: {name}", "unit": unit, "by_points": values,
                         "growth_last_decade": growth, "commands": sorted({r["command"] for r in recs})})
        return rows, [], []

    return Workload("growth", "Cost growth: the same workloads at 1k, 10k, 100k points (per-point cost)", 1, steps,
                    analyse, notes=["beam at 200 and 2,000 points: see the beam workload"])


# ---------------------------------------------------------------- main


def fmt_s(x):
    if x is None:
        return "n/a"
    if x < 1e-3:
        return f"{x * 1e6:.1f} µs"
    if x < 1:
        return f"{x * 1e3:.2f} ms"
    return f"{x:.3f} s"


def print_workload(w, log):
    log("")
    log(f"== {w['title']}")
    if w.get("skipped"):
        log(f"   SKIPPED: {w['skipped']}")
        return
    for r in w["rows"]:
        if "by_points" in r:
            vals = "  ".join(f"{k}: {v:.4g}" if isinstance(v, (int, float)) else f"{k}: n/a"
                             for k, v in r["by_points"].items())
            g = r.get("growth_last_decade")
            log(f"   {r['variant']:<46} {vals}  {r['unit']}" + (f"  (x{g:.2f} last step)" if g else ""))
            continue
        if r.get("error"):
            log(f"   {r['variant']:<46} {r.get('points')!s:>8}  FAILED: {r['error'][:100]}")
            continue
        extra = ""
        if r.get("ratio") is not None:
            extra = f"  ratio {r['ratio']:.3f} ({r['ratio_to']})"
        if r.get("vmhwm_kb") is not None:
            extra = f"  VmHWM {r['vmhwm_kb'] / 1024:.1f} MiB (+{r['above_inputs_kb'] / 1024:.1f} MiB)" + extra
        pps = r.get("points_per_s")
        log(f"   {r['variant']:<46} {r.get('points')!s:>8}  {fmt_s(r['median']):>10}"
            f"  {pps or 0:>12,.0f} /s{extra}")
    for t in w["targets"]:
        mark = {True: "MET   ", False: "MISSED", None: "  --  "}[t["met"]]
        log(f"   [{mark}] {t['target']}: {t['display']}" + (f" — {t['bound']}" if t.get("bound") else ""))
    for n in w.get("notes", []):
        log(f"   note: {n}")


def reanalyse(path):
    """Recomputes rows and targets from the raw records kept in results.json
    (after a change to the analysis), without running anything."""
    with open(path) as f:
        info = json.load(f)

    class Ctx:
        pass

    ctx = Ctx()
    ctx.quick = info["options"]["quick"]
    ctx.runs = info["options"]["runs"]
    ctx.slow_runs = info["options"]["slow_runs"]
    ctx.exes = {b: b for b in RUST_BENCHES}
    builders = {
        "inprocess": lambda: w_inprocess(ctx),
        "cpu": lambda: w_cpu(ctx),
        "beam": lambda: w_beam(ctx, None),
        "cache": lambda: w_cache(ctx),
        "ssh": lambda: w_ssh(ctx, None),
        "slurm": lambda: w_slurm(ctx, None),
        "memory": lambda: w_memory(ctx),
        "growth": lambda: w_growth(ctx, None),
    }
    for entry in info["workloads"]:
        if entry.get("skipped") or "records" not in entry or entry["name"] not in builders:
            continue
        w = builders[entry["name"]]()
        rows, targets, _ = w.analyse(Results(aggregate(entry["records"])))
        entry["rows"], entry["targets"] = rows, targets
        print_workload(entry, print)
    with open(path, "w") as f:
        json.dump(info, f, indent=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, one round")
    parser.add_argument("--only", action="append", default=[],
                        help="workloads to run (repeat or comma-separate): " +
                        "inprocess, cpu, beam, cache, ssh, slurm, memory, growth")
    parser.add_argument("--runs", type=int, default=None, help="repetitions of fast workloads (default 5; quick 3)")
    parser.add_argument("--slow-runs", type=int, default=None,
                        help="rounds of slow workloads: beam, ssh, slurm (default 3; quick 1)")
    parser.add_argument("--out", default=os.path.join(BENCH, "results.json"))
    parser.add_argument("--reanalyse", action="store_true",
                        help="run nothing: recompute the rows and targets of --out from the records it holds")
    args = parser.parse_args()
    if args.reanalyse:
        return reanalyse(args.out)
    args.runs = args.runs or (3 if args.quick else 5)
    args.slow_runs = args.slow_runs or (1 if args.quick else 3)
    only = [x for o in args.only for x in o.split(",") if x]
    known = ["inprocess", "cpu", "beam", "cache", "ssh", "slurm", "memory", "growth"]
    for o in only:
        if o not in known:
            raise SystemExit(f"unknown workload {o!r}; one of {', '.join(known)}")
    selected = only or known

    log_dir = os.path.join(BENCH, ".logs")
    os.makedirs(log_dir, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    log_path = os.path.join(log_dir, f"run-{stamp}.log")
    log_file = open(log_path, "w")

    def log(msg):
        print(msg, flush=True)
        log_file.write(msg + "\n")
        log_file.flush()

    class Ctx:
        pass

    ctx = Ctx()
    ctx.quick = args.quick
    ctx.runs = args.runs
    ctx.slow_runs = args.slow_runs
    ctx.exes = bench_executables()

    started = datetime.datetime.now(datetime.timezone.utc)
    info = {
        "schema": 1,
        "date": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "git": git_state(),
        "options": {"quick": args.quick, "only": only, "runs": args.runs, "slow_runs": args.slow_runs},
        "load_start": loadavg(),
        "cpu_pressure_start": cpu_pressure(),
        "uptime_start": output(["uptime"]),
        "log": os.path.relpath(log_path, ROOT),
        "workloads": [],
    }
    m = info["machine"]
    log(f"otwrap benchmarks {info['date']} on {m['nproc']} x {m['cpu_model']}, kernel {m['kernel']}, "
        f"load {info['load_start']}")
    if info["git"]["dirty"]:
        log(f"note: the work tree has uncommitted changes in {', '.join(info['git']['modified'])}")

    # With --only, the other workloads of an earlier bench/results.json are
    # kept (each carries its own date and load), so that one workload can be
    # measured again without running everything.
    kept = []
    if only and os.path.exists(args.out):
        try:
            with open(args.out) as f:
                kept = [w for w in json.load(f).get("workloads", []) if w.get("name") not in only]
        except (OSError, ValueError):
            kept = []

    def save(info):
        out = dict(info)
        names = [w["name"] for w in info["workloads"]]
        merged = [w for w in kept if w.get("name") not in names] + info["workloads"]
        merged.sort(key=lambda w: known.index(w["name"]) if w.get("name") in known else 99)
        out["workloads"] = merged
        if kept:
            out["kept_from_earlier_runs"] = [w["name"] for w in kept if w.get("name") not in names]
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)

    services = {}
    need = [s for s, w in [("ssh", "ssh"), ("slurm", "slurm"), ("slurm", "beam"), ("ssh", "growth")]
            if w in selected]
    if need:
        services = ensure_services(sorted(set(need)), log)
    ssh_env = services.get("ssh", (None, ""))[0]
    slurm_env = services.get("slurm", (None, ""))[0]
    info["services"] = {k: v[1] for k, v in services.items()}

    builders = {
        "inprocess": lambda: w_inprocess(ctx),
        "cpu": lambda: w_cpu(ctx),
        "beam": lambda: w_beam(ctx, slurm_env),
        "cache": lambda: w_cache(ctx),
        "ssh": lambda: w_ssh(ctx, ssh_env),
        "slurm": lambda: w_slurm(ctx, slurm_env),
        "memory": lambda: w_memory(ctx),
        "growth": lambda: w_growth(ctx, ssh_env),
    }
    for name in selected:
        w = builders[name]()
        entry = {"name": w.name, "title": w.title, "rounds": w.rounds,
                 "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                 "commands": [s.command for s in w.steps], "notes": list(w.notes)}
        missing = [s for s in w.needs if services.get(s, (None,))[0] is None]
        if missing:
            entry["skipped"] = "; ".join(f"{s}: {services.get(s, (None, 'not checked'))[1]}" for s in missing)
            entry["rows"], entry["targets"] = [], []
            info["workloads"].append(entry)
            print_workload(entry, log)
            continue
        log("")
        log(f"## {w.name}: {w.title} — {w.rounds} round(s)")
        entry["git"] = git_state()
        entry["load_before"] = loadavg()
        entry["cpu_pressure_before"] = cpu_pressure()
        t0 = time.perf_counter()
        records, failures = [], []
        for r in range(w.rounds):
            if w.rounds > 1:
                log(f" round {r + 1}/{w.rounds} (load {loadavg()})")
            for step in w.steps:
                recs, rc = run_step(step, r, log, log_file)
                records.extend(recs)
                if rc != 0:
                    failures.append(f"{step.command}: exit status {rc}")
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        entry["load_after"] = loadavg()
        entry["cpu_pressure_after"] = cpu_pressure()
        entry["records"] = records
        rows, targets, notes = w.analyse(Results(aggregate(records)))
        entry["rows"], entry["targets"] = rows, targets
        entry["notes"] += notes + failures
        info["workloads"].append(entry)
        print_workload(entry, log)
        # Written after every workload: a partial run still leaves its numbers.
        info["load_end"] = loadavg()
        info["uptime_end"] = output(["uptime"])
        save(info)

    info["load_end"] = loadavg()
    info["uptime_end"] = output(["uptime"])
    save(info)
    log("")
    log("targets:")
    for w in info["workloads"]:
        for t in w.get("targets", []):
            mark = {True: "MET   ", False: "MISSED", None: "  --  "}[t["met"]]
            log(f"  [{mark}] {w['name']}: {t['target']}: {t['display']}")
        if w.get("skipped"):
            log(f"  [SKIPPED] {w['name']}: {w['skipped']}")
    log(f"results: {os.path.relpath(args.out, ROOT)}; log: {os.path.relpath(log_path, ROOT)}; "
        f"markdown: bench/.venv/bin/python bench/report.py")


if __name__ == "__main__":
    if shutil.which("cargo") is None:
        raise SystemExit("cargo not found")
    main()
