"""Java services' jars, resolved by Maven into ~/.m2 from a pom of ours, their classpath remembered."""

from __future__ import annotations

import subprocess
from pathlib import Path

import structlog

log = structlog.get_logger()


def classpath(pom: Path, cache: Path, what: str) -> str:
    """The classpath of `pom`'s dependencies: the remembered one while it is newer than the pom and every jar
    is there, else resolved by Maven (offline first, from ~/.m2) and remembered in `cache`."""
    if cache.exists() and cache.stat().st_mtime > pom.stat().st_mtime:
        jars = cache.read_text().strip()
        if jars and all(Path(jar).exists() for jar in jars.split(":")):
            return jars
    cache.parent.mkdir(parents=True, exist_ok=True)
    command = ["mvn", "-q", "-B", "-f", str(pom), "dependency:build-classpath", f"-Dmdep.outputFile={cache}"]
    log.info("maven.resolving_classpath", what=what, pom=str(pom))
    offline = subprocess.run([*command, "-o"], capture_output=True, text=True, check=False)
    if offline.returncode != 0:
        online = subprocess.run(command, capture_output=True, text=True, check=False)
        if online.returncode != 0:
            raise RuntimeError(
                f"Maven could not resolve {what} from {pom}:\n{online.stdout[-3000:]}{online.stderr[-3000:]}"
            )
    cache.touch()  # Maven leaves an unchanged file as it was, older than the pom
    return cache.read_text().strip()
