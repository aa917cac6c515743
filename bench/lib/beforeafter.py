#!/usr/bin/env python3
"""Renders a before/after measurement of one change as markdown, from the files a measurement
left in DIR (see bench/PROFILING.md, section 3), each optional: `startup-pairs.json`
(bench/lib/pairs.py), `net-tunnel.md` (bench/net/run.sh), `hook-*.json` (bench/lib/timeit.py),
`hook-pairs.json` (bench/lib/pairs.py --spawn, hook calls and references in turns), `ref.json`
(bench/lib/timeit.py of `/bin/true` and `airlock --version`, next to `hook-*.json`), `date.txt`
and `load-{start,mid,end}.txt` (/proc/loadavg). Nothing is typed in by hand.

    python3 bench/lib/beforeafter.py DIR TITLE > bench/history/DATE-NAME.md
"""
import json, os, statistics, sys

d, title = sys.argv[1], sys.argv[2]


def read(name):
    try:
        return open(os.path.join(d, name)).read().strip()
    except OSError:
        return None


def ms(s):
    return f"{s * 1000:.2f}"


out = [f"### {title}", ""]
load = [read(f"load-{k}.txt") for k in ("start", "mid", "end")]
out.append(f"Measured {read('date.txt') or '?'}; load average (1/5/15 min) "
           + ", ".join(f"{k}: {' '.join(v.split()[:3])}" for k, v in zip(("start", "after start-up", "end"), load) if v)
           + ".")
out.append("")
pairs = json.load(open(os.path.join(d, "startup-pairs.json")))["results"] if read("startup-pairs.json") else []
res = {r["command"]: r for r in pairs}
n = len(pairs[0]["times"]) if pairs else 0
if pairs:
    out.append(f"`true` in each sandbox, {n} rounds in turns after warm-up (bench/lib/pairs.py): wall and "
               "CPU time (user + system of the whole run), peak RSS (`ru_maxrss`, the supervisor's).")
    out.append("")
    out.append("| command | wall median ms | wall fastest ms | CPU median ms | CPU fastest ms | peak RSS median MiB | max MiB | wall vs bwrap (median / fastest) | CPU vs bwrap (median / fastest) |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
bw = res.get("bwrap")
for name, r in res.items():
    t, c, m = r["times"], r["cpu"], r["maxrss_kb"]
    vs = cvs = ""
    if bw and name != "bwrap":
        vs = f"{statistics.median(t) / statistics.median(bw['times']):.2f}x / {min(t) / min(bw['times']):.2f}x"
        cvs = f"{statistics.median(c) / statistics.median(bw['cpu']):.2f}x / {min(c) / min(bw['cpu']):.2f}x"
    out.append(f"| {name} | {ms(statistics.median(t))} | {ms(min(t))} | {ms(statistics.median(c))} | {ms(min(c))} | "
               f"{statistics.median(m) / 1024:.1f} | {max(m) / 1024:.1f} | {vs} | {cvs} |")
if pairs:
    out.append("")
net = read("net-tunnel.md")
if net:
    out.append("Tunnel throughput and latency, airlock-net in-process (bench/net/run.sh, after the change):")
    out.append("")
    out.extend(net.splitlines())
    out.append("")
if read("hook-pairs.json"):
    hp = json.load(open(os.path.join(d, "hook-pairs.json")))["results"]
    out.append(f"`airlock hook claude` per call and references, {len(hp[0]['times'])} rounds in turns after "
               "warm-up (bench/lib/pairs.py --spawn, stdin from a file): wall time, and CPU time (user + system).")
    out.append("")
    out.append("| command | wall median ms | wall p25 ms | wall fastest ms | CPU median ms | CPU fastest ms |")
    out.append("|---|---:|---:|---:|---:|---:|")
    for r in hp:
        t, c = sorted(r["times"]), r["cpu"]
        out.append(f"| {r['command']} | {ms(statistics.median(t))} | {ms(t[len(t) // 4])} | {ms(t[0])} | "
                   f"{ms(statistics.median(c))} | {ms(min(c))} |")
    out.append("")
hooks = []
for k in ("allow", "deny", "mid"):
    p = os.path.join(d, f"hook-{k}.json")
    if os.path.exists(p):
        r = json.load(open(p))["results"][0]
        hooks.append(f"{k}: median {ms(r['median'])} ms, fastest {ms(r['min'])} ms over {len(r['times'])} runs")
if hooks and read("ref.json"):
    # References measured in the same way right after: `/bin/true`, `airlock --version`.
    for r in json.loads(read("ref.json"))["results"]:
        hooks.append(f"for reference {r['command']}: median {ms(r['median'])} ms")
if hooks:
    out.append("`airlock hook claude` per call (bench/lib/timeit.py, stdin from a file): " + "; ".join(hooks) + ".")
    out.append("")
print("\n".join(out))
