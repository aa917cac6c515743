#!/usr/bin/env python3
"""Runs commands in turns (one run of each per round, after warm-up rounds) and records, per run,
the wall time, the CPU time and the peak RSS: what the start-up targets compare, measured so a
burst of load on a shared machine hits every command alike.

CPU time is ru_utime + ru_stime from wait4 on the command: the command's own and that of every
descendant it waited for (airlock's init stages and the sandboxed command; bwrap's children), as
`time` reports it. Peak RSS is ru_maxrss (the largest of those processes, not a sum), which
has a floor: the forked child is a copy of this python process until it execs, and the kernel
keeps that copy's high-water mark (about 10 MiB; the bwrap row shows it). A figure above the
floor is the command's own; at the floor it only says "no more than this".

With --spawn the commands start by posix_spawn (vfork and exec) instead of fork: no copy of
this python process, so CPU time and peak RSS are the command's own, without that floor (about
1 ms of CPU time); for commands of a few milliseconds such as `airlock hook claude`.

    pairs.py [--warmup N] [--rounds N] [--env K=V ...] [--spawn] --export-json F -n NAME CMD [-n NAME CMD ...]

Output: {"results": [{"command", "times", "cpu", "maxrss_kb"}]} with one entry per run in each
list, in seconds and KiB. Commands are split like a shell would and run without one (leading
`VAR=value` words set that command's environment, e.g. a data directory of its own; trailing
`< FILE` words feed it that file on stdin, opened anew for every run, e.g. a hook's input); a
failing run is an error.
"""
import argparse, json, os, re, shlex, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("--warmup", type=int, default=2)
ap.add_argument("--rounds", type=int, default=15)
ap.add_argument("--export-json", required=True)
ap.add_argument("--env", action="append", default=[], metavar="K=V")
ap.add_argument("--spawn", action="store_true", help="posix_spawn instead of fork")
ap.add_argument("-n", action="append", nargs=2, metavar=("NAME", "CMD"), required=True)
a = ap.parse_args()

env = dict(os.environ)
for kv in a.env:
    k, _, v = kv.partition("=")
    env[k] = v
devnull = os.open(os.devnull, os.O_RDWR)


def once(cmd):
    argv = shlex.split(cmd)
    own = dict(env)
    # Leading VAR=value words set the environment of this command only, as in a shell.
    while argv and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", argv[0]):
        k, _, v = argv.pop(0).partition("=")
        own[k] = v
    stdin = None
    if len(argv) >= 3 and argv[-2] == "<":
        stdin = argv.pop()
        argv.pop()
    t = time.perf_counter()
    if a.spawn:
        acts = [(os.POSIX_SPAWN_DUP2, devnull, fd) for fd in (0, 1, 2)]
        if stdin is not None:
            acts.append((os.POSIX_SPAWN_OPEN, 0, stdin, os.O_RDONLY, 0))
        pid = os.posix_spawnp(argv[0], argv, own, file_actions=acts)
    else:
        pid = os.fork()
    if pid == 0:
        try:
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            if stdin is not None:
                os.dup2(os.open(stdin, os.O_RDONLY), 0)
            os.execvpe(argv[0], argv, own)
        finally:
            os._exit(127)
    _, status, ru = os.wait4(pid, 0)
    wall = time.perf_counter() - t
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"pairs: {cmd!r} exited with {code}")
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss


res = {name: {"command": name, "times": [], "cpu": [], "maxrss_kb": []} for name, _ in a.n}
for rnd in range(a.warmup + a.rounds):
    for name, cmd in a.n:
        wall, cpu, rss = once(cmd)
        if rnd >= a.warmup:
            r = res[name]
            r["times"].append(wall)
            r["cpu"].append(cpu)
            r["maxrss_kb"].append(rss)
for r in res.values():
    ts = sorted(r["times"])
    print(f"{r['command']}: median {ts[len(ts) // 2] * 1000:.1f} ms over {len(ts)} runs", file=sys.stderr)
json.dump({"results": list(res.values())}, open(a.export_json, "w"), indent=1)
