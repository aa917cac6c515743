#!/usr/bin/env python3
"""Fallback for hyperfine when it is not installed (bench/run.sh --quick never installs it).

Writes the same JSON shape as `hyperfine --export-json` (results[].command/mean/stddev/median/
min/max/times) and a CSV summary. Commands are split like a shell would split them and run
without a shell; --stdin FILE feeds every run that file.

    timeit.py [--warmup N] [--runs N] [--export-json F] [--export-csv F] [--stdin FILE] -n NAME CMD ...
"""
import argparse, csv, json, shlex, statistics, subprocess, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("--warmup", type=int, default=1)
ap.add_argument("--runs", type=int, default=10)
ap.add_argument("--export-json")
ap.add_argument("--export-csv")
ap.add_argument("--stdin")
ap.add_argument("-n", action="append", nargs=2, metavar=("NAME", "CMD"), required=True)
a = ap.parse_args()

results = []
for name, cmd in a.n:
    argv = shlex.split(cmd)
    def once():
        stdin = open(a.stdin, "rb") if a.stdin else subprocess.DEVNULL
        t = time.perf_counter()
        r = subprocess.run(argv, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        dt = time.perf_counter() - t
        if r.returncode != 0:
            sys.exit(f"timeit: {cmd!r} exited with {r.returncode}")
        return dt
    for _ in range(a.warmup):
        once()
    times = [once() for _ in range(a.runs)]
    results.append({"command": name, "mean": statistics.mean(times),
                    "stddev": statistics.stdev(times) if len(times) > 1 else 0.0,
                    "median": statistics.median(times), "min": min(times), "max": max(times),
                    "times": times, "tool": "bench/lib/timeit.py"})
    print(f"{name}: median {results[-1]['median'] * 1000:.1f} ms over {a.runs} runs", file=sys.stderr)
if a.export_json:
    json.dump({"results": results}, open(a.export_json, "w"), indent=1)
if a.export_csv:
    with open(a.export_csv, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["command", "mean", "stddev", "median", "user", "system", "min", "max"])
        for r in results:
            w.writerow([r["command"], r["mean"], r["stddev"], r["median"], "", "", r["min"], r["max"]])
