#!/usr/bin/env python3
"""procmem.py PID EXCLUDE_COMM: prints "RSS HWM TREE" in KiB for one process: its VmRSS, its
VmHWM (peak so far), and the VmRSS summed over it and all its descendants except processes whose
name is EXCLUDE_COMM (the load generator). Zeros for a process that is gone."""
import sys


def status(pid):
    out = {}
    try:
        for line in open(f"/proc/{pid}/status"):
            k, _, v = line.partition(":")
            out[k] = v.strip()
    except OSError:
        pass
    return out


def kb(st, key):
    v = st.get(key, "0 kB").split()
    return int(v[0]) if v else 0


def children(pid):
    kids = []
    try:
        import os
        for t in os.listdir(f"/proc/{pid}/task"):
            try:
                kids += [int(x) for x in open(f"/proc/{pid}/task/{t}/children").read().split()]
            except OSError:
                pass
    except OSError:
        pass
    return kids


root, skip = int(sys.argv[1]), sys.argv[2]
st = status(root)
tree, queue = 0, [root]
while queue:
    p = queue.pop()
    s = st if p == root else status(p)
    if s.get("Name") != skip:
        tree += kb(s, "VmRSS")
    queue += children(p)
print(kb(st, "VmRSS"), kb(st, "VmHWM"), tree)
