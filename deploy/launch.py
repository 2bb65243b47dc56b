"""Run a supervised program as its launch spec says: `python deploy/launch.py SPEC.json`.

supervisord starts this (as root); it reads the spec (argv, environment, working
directory, user), drops to the user when one is named, and execs the program, which
keeps this process's pid, so supervisord watches and signals the program itself.
Should supervisord itself die (the OOM killer, a kill -9), its programs die with it
instead of running on unsupervised, holding their ports against the next `services up`.
Standard library only: it runs as a file, before any of ctrlgpt is importable.
"""

from __future__ import annotations

import ctypes
import json
import os
import pwd
import signal
import sys

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _die_with_parent(parent: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    if os.getppid() != parent:  # it died before the signal was armed
        sys.exit(1)


def main(spec_path: str) -> None:
    supervisord = os.getppid()
    with open(spec_path, encoding="utf-8") as handle:
        spec = json.load(handle)
    if spec.get("cwd"):
        os.chdir(spec["cwd"])
    if spec.get("user"):
        account = pwd.getpwnam(spec["user"])
        # Its primary group only: no root's supplementary groups carried into the service.
        os.setgroups([])
        os.setgid(account.pw_gid)
        os.setuid(account.pw_uid)
    # After the user change, which clears the parent-death signal; exec keeps it.
    _die_with_parent(supervisord)
    argv = spec["argv"]
    os.execvpe(argv[0], argv, spec["env"])


if __name__ == "__main__":
    main(sys.argv[1])
