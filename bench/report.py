#!/usr/bin/env python3
"""Prints bench/results.json (written by bench/run.sh) as the markdown tables
of BENCHMARKS.md:

    python3 bench/report.py [bench/results.json] > /tmp/tables.md
    python3 bench/report.py --update BENCHMARKS.md   # replaces the generated tables in place

With --update, everything after the line "### The tables (`python3 bench/report.py`)"
of that file is replaced by the tables (the prose above it is not touched:
update the targets it quotes by hand). Standard library only.
"""

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fmt_time(s):
    if s is None:
        return "n/a"
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def fmt_per_point(us):
    if us is None:
        return "n/a"
    if us < 1:
        return f"{us * 1e3:.1f} ns"
    if us < 1000:
        return f"{us:.2f} µs"
    return f"{us / 1e3:.3f} ms"


def fmt_rate(r):
    if r is None:
        return "n/a"
    if r >= 1e6:
        return f"{r / 1e6:.2f} M"
    return f"{r:,.0f}"


def fmt_ratio(row):
    r = row.get("ratio")
    if r is None:
        return ""
    to = row.get("ratio_to", "")
    if "fraction" in to:
        return f"{r * 100:.1f}% ({to})"
    return f"{r:.2f}× ({to})"


def calls(row):
    c = row.get("calls")
    if isinstance(c, dict):
        return ", ".join(f"{k} {v}" for k, v in sorted(c.items()))
    return str(c) if c else ""


def table(headers, rows):
    out = ["| " + " | ".join(headers) + " |",
           "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(x) for x in r) + " |")
    return "\n".join(out)


def spread(r):
    """min–max of the rounds' medians, when there are several rounds."""
    samples = r.get("samples") or []
    if len(samples) < 2:
        return ""
    return f"{fmt_time(min(samples))} – {fmt_time(max(samples))}"


def detail(r):
    d = []
    if r.get("cores_obtained") is not None:
        d.append(f"{r['cores_obtained']:.2f} cores obtained")
    if r.get("overhead_us_per_point") is not None and r.get("ratio") is not None:
        d.append(f"{r['overhead_us_per_point'] * 1e3:+.1f} ns/point over bare")
    if r.get("added_ms_over_bare_solver") is not None:
        d.append(f"{r['added_ms_over_bare_solver']:+.3f} ms/eval over the bare solver")
    if r.get("startup_s") is not None and r["startup_s"] > 0.5:
        d.append(f"start-up {r['startup_s']:.1f} s not included")
    if r.get("added_us_per_point") is not None:
        d.append(f"{r['added_us_per_point']:+.2f} µs/point over no cache")
    if r.get("hits_per_s"):
        d.append(f"{r['hits_per_s']:,.0f} hits/s")
    return "; ".join(d)


def rows_generic(w):
    out = []
    for r in w["rows"]:
        if r.get("error"):
            out.append([r["variant"], r.get("points", ""), "failed: " + r["error"][:80], "", "", "", "", ""])
            continue
        out.append([r["variant"], f"{r.get('points', 0):,}", fmt_time(r.get("median")), spread(r),
                    fmt_per_point(r.get("per_point_us")), fmt_rate(r.get("points_per_s")), fmt_ratio(r), detail(r)])
    return table(["variant", "points", "median wall time", "rounds' range", "per point", "points/s", "ratio",
                  "detail"], out)


def rows_slurm(w):
    out = []
    for r in w["rows"]:
        if r.get("error"):
            out.append([r["variant"], r.get("points", ""), "failed: " + r["error"][:80], "", "", "", "", ""])
            continue
        extra = []
        if r.get("start_s") is not None:
            extra.append(f"start {r['start_s']:.2f} s + compute {r['compute_s']:.2f} s")
        if r.get("last_written_s") is not None:
            extra.append(f"last task wrote at {r['last_written_s']:.2f} s")
        if r.get("noticed_after_s") is not None:
            extra.append(f"noticed {r['noticed_after_s']:.2f} s later")
        out.append([r["variant"], f"{r.get('points', 0):,}", fmt_time(r.get("median")), spread(r),
                    fmt_rate(r.get("points_per_s")), calls(r), "; ".join(extra), fmt_ratio(r)])
    return table(["variant", "points", "median wall time", "rounds' range", "points/s", "SLURM calls", "detail",
                  "ratio"], out)


def rows_memory(w):
    out = []
    for r in w["rows"]:
        if r.get("vmhwm_kb") is None:
            continue
        out.append([r["variant"], f"{r.get('points', 0):,}", f"{r['vmhwm_kb'] / 1024:.1f} MiB",
                    f"{r['above_inputs_kb'] / 1024:.1f} MiB", f"{r['bytes_per_point_above_inputs']:.0f}",
                    f"{r['ratio']:.2f}" if r.get("ratio") else ""])
    return table(["variant", "points", "VmHWM", "over 'inputs only'", "bytes/point over inputs",
                  "VmHWM / bare rayon"], out)


def rows_growth(w):
    sizes = sorted({int(k) for r in w["rows"] for k in r["by_points"]})
    out = []
    for r in w["rows"]:
        vals = []
        for n in sizes:
            v = r["by_points"].get(str(n))
            vals.append("" if v is None else (f"{v:.3g}" if v < 100 else f"{v:,.0f}"))
        g = r.get("growth_last_decade")
        out.append([r["variant"], r["unit"]] + vals + [f"×{g:.2f}" if g else ""])
    return table(["workload", "unit"] + [f"{n:,} points" for n in sizes] + ["last step"], out)


MARKER = "### The tables (`python3 bench/report.py`)\n"


def main():
    args = sys.argv[1:]
    update = None
    if "--update" in args:
        i = args.index("--update")
        if i + 1 >= len(args):
            sys.exit("--update needs the markdown file to update")
        update = args[i + 1]
        del args[i:i + 2]
    path = args[0] if args else os.path.join(ROOT, "bench", "results.json")
    if update is None:
        render(path)
        return
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        render(path)
    with open(update) as f:
        text = f.read()
    if MARKER not in text:
        sys.exit(f"{update} has no line {MARKER.strip()!r}")
    tables = buf.getvalue().replace("\n### ", "\n#### ")
    text = text[:text.index(MARKER) + len(MARKER)] + "\n" + tables.rstrip("\n") + "\n"
    with open(update, "w") as f:
        f.write(text)
    print(f"updated the tables of {update}")


def render(path):
    with open(path) as f:
        res = json.load(f)
    m = res["machine"]
    git = res.get("git", {})
    print(f"Measured {res['date']} by `bench/run.sh`"
          + (" --quick" if res["options"].get("quick") else "")
          + (f" --only {','.join(res['options']['only'])}" if res["options"].get("only") else "")
          + f" (runs {res['options']['runs']}, rounds of slow workloads {res['options']['slow_runs']}) on "
          f"{m['nproc']} × {m['cpu_model']}, {m.get('memory_gib')} GiB, kernel {m['kernel']}, {m.get('os')}, "
          f"{m.get('rustc')}, Python {m.get('python')}; commit `{(git.get('commit') or '?')[:10]}`"
          + (" with uncommitted changes in " + ", ".join(f"`{p}`" for p in git.get("modified", []))
             if git.get("dirty") else "")
          + f". Load average at the start {res.get('load_start')}, at the end {res.get('load_end')} "
          "(the machine is shared: compare ratios measured in the same run)."
          + (f" Workloads {', '.join(res['kept_from_earlier_runs'])} come from an earlier run of the harness "
             "(dates below)." if res.get("kept_from_earlier_runs") else ""))
    print()
    for w in res["workloads"]:
        print(f"### {w['title']}")
        print()
        if w.get("skipped"):
            print(f"Skipped: {w['skipped']}.")
            print()
            continue
        load = f"load average {w.get('load_before')} → {w.get('load_after')}"
        p0, p1 = w.get("cpu_pressure_before"), w.get("cpu_pressure_after")
        if p0 and p1:
            load += f", CPU pressure (some, avg60) {p0['avg60']:.0f}% → {p1['avg60']:.0f}%"
        rounds = f"{w['rounds']} round(s), " if w.get("rounds", 1) > 1 else ""
        when = f"Measured {w['date']}, " if w.get("date") else ""
        if w.get("git", {}).get("commit"):
            when += f"commit `{w['git']['commit'][:7]}`" + (" (+ uncommitted changes)" if w["git"].get("dirty") else "") + ", "
        print(f"{when}{rounds}{load}, {w.get('seconds', 0):.0f} s. Commands:")
        print()
        for c in w["commands"]:
            print(f"- `{c}`")
        print()
        render = {"slurm": rows_slurm, "memory": rows_memory, "growth": rows_growth}.get(w["name"], rows_generic)
        print(render(w))
        print()
        if w.get("targets"):
            print(table(["target (issue 8)", "measured", "met"],
                        [[t["target"], t["display"] + (f" — {t['bound']}" if t.get("bound") else ""),
                          {True: "yes", False: "**no**", None: "—"}[t["met"]]] for t in w["targets"]]))
            print()
        for n in w.get("notes", []):
            print(f"Note: {n}")
            print()


if __name__ == "__main__":
    main()
