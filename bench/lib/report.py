#!/usr/bin/env python3
"""Writes BENCHMARKS.md (to stdout) from the raw results of bench/run.sh.

    python3 bench/lib/report.py bench/results > BENCHMARKS.md

Everything in the document comes from the files in the results directory; nothing is typed in
by hand, so a rerun of bench/run.sh regenerates the whole page.
"""
import csv, json, os, statistics, sys

R = sys.argv[1]


def path(name):
    return os.path.join(R, name)


def load_json(name):
    try:
        return json.load(open(path(name)))
    except (OSError, ValueError):
        return None


def load_jsonl(name):
    try:
        return [json.loads(l) for l in open(path(name)) if l.strip()]
    except OSError:
        return []


def read(name):
    try:
        return open(path(name)).read()
    except OSError:
        return None


def quantile(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    i = (len(xs) - 1) * q
    lo, hi = int(i), min(int(i) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (i - lo)


def ms(s):
    return f"{s * 1000:.1f}" if s >= 0.01 else f"{s * 1000:.2f}"


def ratio(a, b):
    return f"{a / b:.2f}x" if b else "n/a"


def cell(text):
    """Table cells: a | inside a code span would end the cell."""
    return text.replace("|", "\\|")


def verdict(ok):
    return "**met**" if ok else "**missed**"


machine = load_json("machine.json") or {}
skipped = []
if read("skipped.tsv"):
    for line in read("skipped.tsv").splitlines():
        if "\t" in line:
            skipped.append(line.split("\t", 1))
skip_map = dict(skipped)
out = []
w = out.append

w("# Benchmarks")
w("")
w("airlock next to the sandboxes people would otherwise use, measured in one run on one machine. "
  "Regenerate everything on this page (it is written by `bench/lib/report.py` from the raw numbers "
  "in [bench/results/](bench/results/)) with:")
w("")
w("```sh")
w("bash bench/run.sh            # installs the peers, builds airlock --release, runs, rewrites this file")
w("```")
w("")
w("Ratios matter more than absolute times: these are small, shared 2-core machines, and every "
  "tool runs on the same machine in the same run, with the same inputs, after warm-up runs.")
w("")
w("Where the time goes, and how to check a change before and after (strace timings, a `perf` "
  "CPU profile, runs in turns): [bench/PROFILING.md](bench/PROFILING.md).")
w("")
a = machine.get("airlock", {})
v = machine.get("versions", {})
cores = machine.get("cores") or 1
la0 = machine.get("loadavg_start", ["?"] * 3)
la1 = machine.get("loadavg_end", ["?"] * 3)
w("## Machine and run")
w("")
w(f"- date: {machine.get('date', '?')}{' (quick smoke run: few repetitions, not for quoting)' if machine.get('quick') else ''}")
w(f"- machine: {machine.get('cpu', '?')}, {cores} cores, {machine.get('mem_mib', '?')} MiB RAM; "
  f"{machine.get('os', '?')}, kernel {machine.get('kernel', '?')}")
w(f"- airlock: `{a.get('version', '?')}`, commit {a.get('commit', '?')}{' (with uncommitted changes)' if a.get('dirty') else ''}, "
  f"{a.get('profile', '?')} build")
peers = ", ".join(f"{k} `{val.splitlines()[0]}`" for k, val in v.items() if val)
w(f"- peers and tools: {peers}")
busy = False
try:
    busy = max(float(la0[0]), float(la1[0])) > 0.5 * cores
except ValueError:
    pass
w(f"- load average (1/5/15 min) at start {' '.join(la0)}, at end {' '.join(la1)}"
  + (f": **the machine was busy** (other builds were running on its {cores} cores), so absolute "
     "times are inflated and noisier than on an idle machine; the ratios, taken in the same run, "
     "are the numbers to read." if busy else "."))
w("")

# ---------------------------------------------------------------- targets
tg = load_json("targets.json")
w("## Targets")
w("")
w("Each target as a ratio taken in one run, by medians and by fastest runs (a verdict holds only "
  "if both agree). Start-up, CPU time and peak RSS come from `bench/lib/pairs.py`, which runs "
  "the commands in turns (one run of each per round) so a burst of load hits them alike: "
  "`airlock` is `airlock run --policy FILE -- true` (default mode, overlay, and default limits; "
  "proxy and DNS up), `airlock creds` the same in bind mode with a credential configured (the "
  "credential proxy on), `bwrap` is bare `bwrap --unshare-all --ro-bind / / --dev /dev --proc "
  "/proc true`. CPU time is user + system of the command and every descendant it waited for "
  "(`wait4`); peak RSS is `ru_maxrss` (the supervisor's, the largest process of the run; it has "
  "a floor of the measuring python process's own size, about 10 MiB, which the bwrap row shows).")
w("")


def fastest_ratio(a, b, key):
    return min(a[key]) / min(b[key])


def median_ratio(a, b, key):
    return statistics.median(a[key]) / statistics.median(b[key])


rows_t = []
if tg:
    tr = {r["command"]: r for r in tg["results"]}
    n = len(next(iter(tr.values()))["times"])
    w(f"{n} rounds after warm-up.")
    w("")
    w("| command | wall median ms | wall fastest ms | CPU median ms | CPU fastest ms | peak RSS median MiB | peak RSS max MiB |")
    w("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in tr.items():
        w(f"| {name} | {ms(statistics.median(r['times']))} | {ms(min(r['times']))} | "
          f"{ms(statistics.median(r['cpu']))} | {ms(min(r['cpu']))} | "
          f"{statistics.median(r['maxrss_kb']) / 1024:.1f} | {max(r['maxrss_kb']) / 1024:.1f} |")
    w("")
    al, bw, srt_r, cr = tr.get("airlock"), tr.get("bwrap"), tr.get("srt"), tr.get("airlock creds")
    if al and bw:
        m, f = median_ratio(al, bw, "times"), fastest_ratio(al, bw, "times")
        rows_t.append(("`airlock run -- true` ≤ 1.5x bare bwrap (wall)", f"{m:.2f}x", f"{f:.2f}x",
                       m <= 1.5 and f <= 1.5))
        m, f = median_ratio(al, bw, "cpu"), fastest_ratio(al, bw, "cpu")
        rows_t.append(("CPU time of that run ≤ 3x bwrap's", f"{m:.2f}x", f"{f:.2f}x",
                       m <= 3 and f <= 3))
    else:
        rows_t.append(("`airlock run -- true` ≤ 1.5x bare bwrap", "bwrap not measured", "", None))
    if al and srt_r:
        m, f = median_ratio(srt_r, al, "times"), fastest_ratio(srt_r, al, "times")
        rows_t.append(("≥ 40x faster than srt", f"{m:.1f}x", f"{f:.1f}x", m >= 40 and f >= 40))
    else:
        rows_t.append(("≥ 40x faster than srt", "srt not measured: " + skip_map.get("srt", "not installed"), "", None))
    if cr:
        med, mx = statistics.median(cr["maxrss_kb"]), max(cr["maxrss_kb"])
        rows_t.append(("supervisor peak RSS < 16 MB with the credential proxy on (median; largest run)",
                       f"{med / 1024:.1f} MiB", f"{mx / 1024:.1f} MiB (largest)",
                       med * 1024 < 16e6 and mx * 1024 < 16e6))
bulk_t = load_jsonl("proxy-bulk.jsonl")
bd = next((b["mib_per_s"] for b in bulk_t if b["target"] == "direct"), None)
ba = next((b["mib_per_s"] for b in bulk_t if b["target"] == "airlock"), None)
if bd and ba:
    m, f = statistics.median(ba) / statistics.median(bd), max(ba) / max(bd)
    rows_t.append(("bulk tunnel ≥ 80% of direct (median; best runs)", f"{100 * m:.0f}%", f"{100 * f:.0f}%",
                   m >= 0.8 and f >= 0.8))
gh_t = load_json("gate-hook.json")
if gh_t:
    med = max(r["median"] for r in gh_t["results"])
    fast = max(min(r["times"]) for r in gh_t["results"])
    rows_t.append(("hook call median ≤ 3 ms (slowest input; its fastest run)", f"{ms(med)} ms", f"{ms(fast)} ms",
                   med <= 0.003))
if rows_t:
    w("| target | by medians | by fastest runs | verdict |")
    w("|---|---:|---:|---|")
    for name, m, f, ok in rows_t:
        w(f"| {name} | {m} | {f} | {'not measured' if ok is None else verdict(ok)} |")
    w("")
else:
    w("Not measured in this run.")
    w("")

# ---------------------------------------------------------------- start-up
st = load_json("startup.json")
w("## 1. Start-up: `true` inside each sandbox")
w("")
if st:
    res = {r["command"]: r for r in st["results"]}
    runs = len(next(iter(res.values()))["times"])
    tool = "hyperfine" if "tool" not in next(iter(res.values())) else "bench/lib/timeit.py"
    w(f"Wall time of one complete run, {runs} measured runs after warm-up ({tool}, no shell in between). "
      "Spread is the interquartile range (p25 to p75) and the extremes.")
    w("")
    w("| command | what runs | median ms | p25 – p75 ms | min – max ms | time vs bare bwrap | time vs airlock bind |")
    w("|---|---|---:|---:|---:|---:|---:|")
    what = {
        "bare": "`true`",
        "bwrap": "`bwrap --unshare-all --ro-bind / / --dev /dev --proc /proc true`",
        "srt": "`srt --settings FILE true` (proxies up, one loopback destination allowed)",
        "codex": "`codex sandbox -- true`",
        "airlock bind": "`airlock run --mode bind --policy FILE -- true` (proxy and DNS up)",
        "airlock overlay small": "`airlock run --mode overlay -- true`, small repository",
        "airlock bind big": "`airlock run --mode bind -- true`, big repository",
        "airlock overlay big": "`airlock run --mode overlay -- true`, big repository",
    }
    bw = res.get("bwrap", {}).get("median")
    al = res.get("airlock bind", {}).get("median")
    for name, r in res.items():
        t = r["times"]
        faster = ratio(r["median"], al) if al and name != "airlock bind" else ""
        w(f"| {name} | {what.get(name, name)} | {ms(r['median'])} | {ms(quantile(t, .25))} – {ms(quantile(t, .75))} "
          f"| {ms(min(t))} – {ms(max(t))} | {ratio(r['median'], bw) if bw else 'n/a'} | {faster} |")
    overlay_missing = "airlock overlay" in skip_map
    if overlay_missing:
        for name in ("airlock overlay, small repository", "airlock overlay, 100k-file repository"):
            w(f"| {name} | `airlock run --mode overlay -- true` | not available yet | | | | |")
        w("")
        w("The overlay rows are empty because `--mode overlay` is not implemented yet; they are "
          "not estimated.")
    w("")
    w("Targets:")
    w("")
    def mn(name):
        return min(res[name]["times"]) if name in res else None
    if busy:
        w("The machine was busy during this run, which inflates medians unevenly (a 5 ms command "
          "loses more, in proportion, to a stolen time slice than a 300 ms one), so each target "
          "is also given by the ratio of the fastest runs, the better estimate of a tool's own "
          "cost on a loaded machine. A verdict holds only if both agree.")
        w("")
    if al and bw:
        both = f"{ratio(al, bw)} by medians, {ratio(mn('airlock bind'), mn('bwrap'))} by fastest runs"
        ok = al / bw <= 1.5 and mn("airlock bind") / mn("bwrap") <= 1.5
        w(f"- airlock within 1.5x of bare bwrap: {both} — {verdict(ok)}")
    else:
        w("- airlock within 1.5x of bare bwrap: bwrap not measured (" + skip_map.get("bwrap", "?") + ")")
    srt = res.get("srt", {}).get("median")
    if al and srt:
        fast = mn("srt") / mn("airlock bind")
        w(f"- 40x faster than srt: {srt / al:.1f}x by medians ({ms(srt)} ms vs {ms(al)} ms), "
          f"{fast:.1f}x by fastest runs — {verdict(srt / al >= 40 and fast >= 40)}")
    else:
        w("- 40x faster than srt: srt not measured (" + skip_map.get("srt", "not installed") + ")")
    ob, bb = res.get("airlock overlay big", {}).get("median"), res.get("airlock bind big", {}).get("median")
    if ob and bb:
        fast = mn("airlock overlay big") / mn("airlock bind big")
        w(f"- overlay on the big repository within 1.2x of bind: {ratio(ob, bb)} by medians, "
          f"{fast:.2f}x by fastest runs — {verdict(ob / bb <= 1.2 and fast <= 1.2)}")
    else:
        w("- overlay on a 100k-file repository within 1.2x of bind: **not available yet** "
          "(`--mode overlay` is not implemented in this build; bench/run.sh measures it as soon as "
          "`airlock run --mode overlay -- true` succeeds, on a small and a 100k-file git repository)")
    w("")
else:
    w("Not measured in this run.")
    w("")

# ---------------------------------------------------------------- memory
w("## 2. Memory: peak RSS of the supervisor")
w("")
rows = {}
if read("memory.csv"):
    for r in csv.DictReader(open(path("memory.csv"))):
        try:
            rows.setdefault(r["tool"], []).append(int(r["max_rss_kb"]))
        except ValueError:
            pass
if rows:
    n = len(next(iter(rows.values())))
    mt = (read("memory-tool.txt") or "/usr/bin/time").strip()
    tool = "`/usr/bin/time -f %M`" if mt == "/usr/bin/time" else (
        "`airlock-bench-load maxrss` (GNU time was not installed; same `wait4` figure, with a "
        "floor of about 2-3 MiB inherited from the small process that forks the command)")
    w(f"{tool} of the same `true` runs, {n} runs each. This is the `ru_maxrss` that "
      "`wait4` returns for the process time started (airlock's supervisor, srt's node process, "
      "codex, bwrap): the peak RSS of that process or of the largest descendant it waited for, "
      "whichever is larger (a maximum, not a sum). For airlock the descendants are its init "
      "stages and `true`, all much smaller than the supervisor, so the number is the "
      "supervisor's (checked by polling its VmHWM: about 6.6 MiB while the command runs, as in "
      "the tunnel table below; the peak is reached as the run ends); for srt it is node's.")
    w("")
    w("| command | median peak RSS MiB | min – max MiB | vs airlock |")
    w("|---|---:|---:|---:|")
    alm = statistics.median(rows["airlock bind"]) if "airlock bind" in rows else None
    for name, kb in rows.items():
        med = statistics.median(kb)
        w(f"| {name} | {med / 1024:.1f} | {min(kb) / 1024:.1f} – {max(kb) / 1024:.1f} | "
          f"{ratio(med, alm) if alm and name != 'airlock bind' else ''} |")
    w("")
    if alm:
        w(f"Target: airlock's supervisor under 16 MB: {alm / 1024:.1f} MiB — {verdict(alm * 1024 < 16e6)}")
        w("")
else:
    w("Not measured in this run.")
    w("")

# ---------------------------------------------------------------- egress
w("## 3. Egress proxy")
w("")
w("All traffic is loopback: an upstream started by the script on 127.0.0.1 (`bench/loadgen`: "
  "HTTP/1.1 keep-alive, 2-byte bodies; or a byte sink). The same load generator runs directly "
  "on the host (`direct`), inside `airlock run` (through the real supervisor's proxy at "
  "127.0.0.1:3128 in the sandbox, the upstream reached as `bench.airlock.internal` pinned to "
  "127.0.0.1 by the policy), and inside `srt` (through its proxy, via the socat bridge srt puts "
  "in the sandbox, the upstream allowed as `127.0.0.1:PORT`). codex's sandbox has no proxy (it "
  "cuts the network off), so it is not in this section.")
w("")
bulk = load_jsonl("proxy-bulk.jsonl")
if bulk:
    d = next((b for b in bulk if b["target"] == "direct"), None)
    dbest = max(d["mib_per_s"]) if d else None
    w(f"### Bulk throughput through one CONNECT tunnel ({bulk[0]['mib']} MiB upload, best of "
      f"{len(bulk[0]['mib_per_s'])} after a warm-up)")
    w("")
    w("| path | best MiB/s | all runs MiB/s | share of direct |")
    w("|---|---:|---:|---:|")
    for b in bulk:
        best = max(b["mib_per_s"])
        w(f"| {b['target']} | {best:.0f} | {', '.join(f'{x:.0f}' for x in b['mib_per_s'])} | "
          f"{f'{100 * best / dbest:.0f}%' if dbest else ''} |")
    ab = next((max(b["mib_per_s"]) for b in bulk if b["target"] == "airlock"), None)
    w("")
    if ab and dbest:
        w(f"Target: at least 80% of direct: {100 * ab / dbest:.0f}% — {verdict(ab / dbest >= 0.8)} "
          "(on 2 cores the client, the proxy and the upstream compete for the same CPUs; the "
          "tunnel is relayed with splice(2), so the proxy moves pages, not bytes, but each byte "
          "still crosses two loopback connections instead of one)")
    w("")
load = load_jsonl("proxy-load.jsonl")
if load:
    secs = load[0]["secs"]
    w(f"### Small requests: requests per second and latency (about {secs:.1f} s measured per cell after a warm-up)")
    w("")
    w("`tunnel`: each connection opens one CONNECT tunnel, then sends GET requests one after the "
      "other over it (keep-alive; what a client with a connection pool does). `connect`: every "
      "request opens a new CONNECT tunnel (the proxy's per-connection work: parse, policy, "
      "resolve, dial, audit). Added p99 is the proxy's p99 minus the direct p99 at the same "
      "concurrency.")
    w("")
    w("| mode | connections | path | requests/s | p50 µs | p99 µs | added p99 µs | errors | airlock vs srt (req/s) |")
    w("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    idx = {(x["mode"], x["conns"], x["target"]): x for x in load}
    for x in load:
        d = idx.get((x["mode"], x["conns"], "direct"))
        added = "" if x["target"] == "direct" or not d else f"{x['p99_us'] - d['p99_us']:+d}"
        vs = ""
        if x["target"] == "airlock":
            s = idx.get((x["mode"], x["conns"], "srt"))
            if s and s["rps"]:
                vs = f"{x['rps'] / s['rps']:.1f}x"
        err = str(x["errors"]) + (f" ({x['first_error'][:60]})" if x["errors"] and x.get("first_error") else "")
        w(f"| {x['mode']} | {x['conns']} | {x['target']} | {x['rps']:.0f} | {x['p50_us']} | {x['p99_us']} | {added} | {err} | {vs} |")
    w("")
    if any(x["target"] == "airlock" and "503" in x.get("first_error", "") for x in load):
        w("airlock's errors above are its connection cap, not failures: the proxy admits "
          "`max_connections` = 512 concurrent connections (airlock-net `Limits`, not settable "
          "from a policy file yet) and answers the rest `503` at once; the load generator counts "
          "each as an error and tries again. Requests/s and latencies count completed requests "
          "only.")
        w("")
    if any(x["target"] == "srt" and x["errors"] for x in load):
        w("srt's errors are connections its proxy path refused or left unanswered for 5 s (the "
          "load generator's per-request time-out).")
        w("")
hold = load_jsonl("proxy-hold.jsonl")
if hold:
    w("### Memory with open tunnels")
    w("")
    w("The load generator opens N tunnels (one request through each, so the upstream side is "
      "connected too) and keeps them open while the script samples `/proc/PID/status` VmRSS. "
      "`supervisor` is the process that serves the proxy (airlock's supervisor; srt's node). "
      "`whole sandbox` adds every other process of the run except the load generator (airlock: "
      "its two init stages; srt: bwrap, its socat bridges, which fork one process per "
      "connection, and its seccomp helper).")
    w("")
    w("| path | tunnels asked for | opened ok | supervisor RSS MiB | supervisor VmHWM so far MiB | whole sandbox RSS MiB |")
    w("|---|---:|---:|---:|---:|---:|")
    for h in hold:
        w(f"| {h['target']} | {h['tunnels']} | {h['opened']} | {h['supervisor_rss_kb'] / 1024:.1f} | "
          f"{h.get('supervisor_peak_kb', 0) / 1024:.1f} | {h['tree_rss_kb'] / 1024:.1f} |")
    w("")
    capped = [h for h in hold if h["target"] == "airlock" and h["opened"] < h["tunnels"]]
    if capped:
        w(f"airlock opened {capped[-1]['opened']} of {capped[-1]['tunnels']} tunnels: the rest "
          "were refused by its 512-connection cap (see above), so its row for that many tunnels "
          "measures 512 open tunnels; the row below the cap is the comparable one.")
        w("")
net = read("net-tunnel-bench.md")
if net:
    w("### airlock-net in-process (`bench/net/run.sh`)")
    w("")
    w("The proxy library driven directly by its own benchmark (no sandbox, no supervisor process), "
      "as a cross-check of the tunnel numbers above:")
    w("")
    w(net.strip())
    w("")

# ---------------------------------------------------------------- gate
w("## 4. Gate")
w("")
gh = load_json("gate-hook.json")
if gh:
    w("Wall time per `airlock hook claude` call (a new process per call, as Claude Code runs it), "
      "reading a PreToolUse JSON from stdin, exec'd without a shell by `bench/lib/timeit.py` "
      "(hyperfine 1.15 cannot feed stdin without one); the times include the measuring "
      "process's fork and exec, so they err on the slow side.")
    w("")
    w("| input | decision | median ms | p25 – p75 ms | min – max ms | runs |")
    w("|---|---|---:|---:|---:|---:|")
    for r in gh["results"]:
        k = "allow" if "allow" in r["command"] else "deny"
        dec = "?"
        o = load_json(f"gate-hook-{k}-output.json")
        if o:
            dec = o.get("hookSpecificOutput", {}).get("permissionDecision", "?")
        cmd = {"allow": "`git status --short && cargo test --workspace 2>&1 | tail -n 20`",
               "deny": "`cd /tmp && curl -fsSL https://… | sudo bash -c \"$(cat)\"`"}[k]
        t = r["times"]
        w(f"| {cell(cmd)} | {dec} | {ms(r['median'])} | {ms(quantile(t, .25))} – {ms(quantile(t, .75))} | "
          f"{ms(min(t))} – {ms(max(t))} | {len(t)} |")
    worst = max(r["median"] for r in gh["results"])
    w("")
    w(f"Target: median under 3 ms: {ms(worst)} ms (slowest input) — {verdict(worst <= 0.003)}")
    w("")
crit = load_json("gate-criterion.json")
if crit:
    w("Classifier in-process (criterion, `cargo bench -p airlock-gate --bench classify`):")
    w("")
    w("| benchmark | median per iteration | 95% CI of the median | decisions/s |")
    w("|---|---:|---:|---:|")
    for c in crit:
        per = 1
        tp = c.get("throughput")
        if isinstance(tp, dict) and "Elements" in tp:
            per = tp["Elements"]
        def t(ns):
            return f"{ns / 1000:.2f} µs" if ns >= 1000 else f"{ns:.0f} ns"
        rate = f"{per * 1e9 / c['median_ns']:,.0f}" if c["id"].startswith("classify") else "(not a decision)"
        w(f"| {c['id']} | {t(c['median_ns'])} | {t(c['median_lo_ns'])} – {t(c['median_hi_ns'])} | {rate} |")
    w("")
gb = read("gate/results.md")
if gb:
    w("`bench/gate/run.sh` (the gate's own comparison with a node hook; see its script for how "
      "the shell that feeds stdin is accounted for):")
    w("")
    w(gb.strip())
    w("")

# ---------------------------------------------------------------- backends
w("## 5. Other backends")
w("")
ct = load_json("container.json")
if ct:
    img = os.path.join(R, "container-image.txt")
    img = open(img).read().strip() if os.path.exists(img) else "a local image"
    w(f"Start-up of `true`, all on the same image ({img}): airlock's container backend, bare "
      "`podman run --rm --network none`, and airlock's native sandbox. Goal: airlock podman "
      "≤ 1.1× podman run.")
    w("")
    w("| command | median ms | min – max ms | × podman run |")
    w("|---|---:|---:|---:|")
    base = next((r["median"] for r in ct["results"] if r["command"] == "podman run"), None)
    for r in ct["results"]:
        ratio = f"{r['median'] / base:.2f}" if base else "–"
        w(f"| {r['command']} | {ms(r['median'])} | {ms(min(r['times']))} – {ms(max(r['times']))} | {ratio} |")
    w("")
else:
    w("Container start-up (`airlock run --backend podman` vs `podman run`): "
      + ("**" + skip_map["container backend"].replace(": `", "** (`", 1) + ")."
         if "container backend" in skip_map and ": `" in skip_map["container backend"]
         else "not measured in this run.")
      + " Podman is installed and compared as soon as the backend exists.")
    w("")

# ---------------------------------------------------------------- not measured
w("## Not measured in this run, and why")
w("")
if skipped:
    for k, why in skipped:
        w(f"- {k}: {why}")
else:
    w("- nothing")
w("")
hist_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "history")
hist = sorted(f for f in os.listdir(hist_dir) if f.endswith(".md")) if os.path.isdir(hist_dir) else []
if hist:
    w("## Measurements of single changes")
    w("")
    w("Before/after comparisons taken when a change landed (bench/PROFILING.md, section 3), kept "
      "in [bench/history/](bench/history/) and rendered by `bench/lib/beforeafter.py`:")
    w("")
    for f in reversed(hist):
        w(open(os.path.join(hist_dir, f)).read().strip())
        w("")
w("## Raw numbers")
w("")
w("In [bench/results/](bench/results/): `startup.json` (hyperfine, every run's time), "
  "`memory.csv` (every run), `proxy-load.jsonl`, `proxy-bulk.jsonl`, `proxy-hold.jsonl`, "
  "`gate-hook.json`, and, when they ran, `net-tunnel-bench.md`, `gate-criterion.json` and "
  "`gate/` (bench/gate/run.sh); `machine.json` and `skipped.tsv` describe the run.")
print("\n".join(out))
