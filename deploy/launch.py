"""Run a supervised program as its launch spec says: `python deploy/launch.py SPEC.json`.

supervisord starts this (as root); it reads the spec (argv, environment, working
directory, user), drops to the user when one is named, and execs the program, which
keeps this process's pid, so supervisord watches and signals the program itself.
Standard library only: it runs as a file, before any of ctrlgpt is importable.
"""

from __future__ import annotations

import json
import os
import pwd
import sys


def main(spec_path: str) -> None:
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
    argv = spec["argv"]
    os.execvpe(argv[0], argv, spec["env"])


if __name__ == "__main__":
    main(sys.argv[1])
