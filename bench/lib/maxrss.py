#!/usr/bin/env python3
"""Fallback for `/usr/bin/time -f %M`: runs a command and prints the ru_maxrss (KiB) that wait4
reports for it, which is what GNU time prints: the peak RSS of the child itself or of the
largest descendant it waited for, whichever is larger (not a sum)."""
import os, subprocess, sys

p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
_, status, ru = os.wait4(p.pid, 0)
if os.waitstatus_to_exitcode(status) != 0:
    sys.exit(f"maxrss: {sys.argv[1:]} failed")
print(ru.ru_maxrss)
