"""otwrapy's cache on a trivial model: what `FunctionDecorator(enableCache=True)`
gives (an OpenTURNS MemoizeFunction in memory, history off), with the cache
size raised to hold every point (its default, 65,536 entries, would evict).

    bench/.venv/bin/python bench/peers/otwrapy_cache.py --points 100000 --runs 5 [--json FILE]

Times a batch with no hit (a new function each run) and the same batch again
(all hits). Appends one JSON object per variant with --json (default
$OTWRAP_BENCH_JSON).
"""

import argparse
import json
import os
import statistics
import time

import openturns as ot
import otwrapy as otw


class Trivial(ot.OpenTURNSPythonFunction):
    def __init__(self):
        super().__init__(1, 1)

    def _exec(self, x):
        return [x[0] * 2.0 + 1.0]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", default=os.environ.get("OTWRAP_BENCH_JSON"),
                        help="append JSON lines to this file (default: $OTWRAP_BENCH_JSON)")
    args = parser.parse_args()
    n = args.points
    ot.ResourceMap.SetAsUnsignedInteger("Cache-MaxSize", max(n, 65536))
    X = ot.Sample([[i * 1e-3] for i in range(n)])
    cold, warm = [], []
    for _ in range(args.runs):
        f = otw.FunctionDecorator(enableCache=True)(Trivial)()
        t0 = time.perf_counter()
        f(X)
        cold.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        Y = f(X)
        warm.append(time.perf_counter() - t0)
        assert Y.getSize() == n and abs(Y[n - 1, 0] - ((n - 1) * 2e-3 + 1.0)) < 1e-9
        assert f.getCacheHits() >= n, f.getCacheHits()
    for name, times in [("otwrapy MemoizeFunction, no hit", cold), ("otwrapy MemoizeFunction, all hits", warm)]:
        med = statistics.median(times)
        print(f"{name:<36} {med * 1e3:9.1f} ms  {n / med:12,.0f} points/s")
        if args.json:
            with open(args.json, "a") as out:
                out.write(json.dumps({"bench": "otwrapy-cache", "name": name, "points": n, "runs": args.runs,
                                      "median_s": med, "per_point_us": med * 1e6 / n, "points_per_s": n / med,
                                      "hits_per_s": n / med if "hits" in name else None}) + "\n")


if __name__ == "__main__":
    main()
