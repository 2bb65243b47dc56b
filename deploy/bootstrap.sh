#!/usr/bin/env bash
# Installs what this machine lacks to run ctrlgpt (as root, on Debian), and nothing else:
# system packages, the Python venvs, the Kafka jars and the Elasticsearch zip.
# Downloads are cached under ~/.cache and ~/.m2, never in the repo. Safe to run
# again: when everything is there it checks and exits within seconds, silently.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
export UV_CACHE_DIR="${UV_CACHE_DIR:-$HOME/.cache/uv}"
CACHE="$HOME/.cache/ctrlgpt"
JAVA17="/usr/lib/jvm/java-17-openjdk-amd64/bin/java"
mkdir -p "$CACHE"

say() { echo "bootstrap: $*"; }

# A stamp holds the hash of the files a step was made from: same hash, nothing to do.
fresh() {  # fresh STAMP FILE...
    [ -f "$1" ] && [ "$(cat "$1")" = "$(cat "${@:2}" | sha256sum)" ]
}
stamp() {  # stamp STAMP FILE...
    cat "${@:2}" | sha256sum >"$1"
}

# System packages: Chromium for the crawler, Java 17 and Maven for Kafka, Kafka Connect and
# Elasticsearch, PostgreSQL 15 for doccano (its cluster is made under the data dir at first start).
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/lib/postgresql/15/bin/postgres ] || missing+=(postgresql)
[ -x "$JAVA17" ] || missing+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || missing+=(maven)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v uv >/dev/null; then
    say "installing uv"
    pip install --quiet uv
fi

# The main venv: the exact lock (hashes checked), then ctrlgpt itself in editable mode (sync
# removes it). A checkout runs the tests too, so it gets the test lock: the runtime lock plus the
# test tools, at the same versions. CTRLGPT_LOCK=requirements.lock installs the runtime only.
LOCK="${CTRLGPT_LOCK:-requirements-test.lock}"
if [ ! -x .venv/bin/python ]; then
    say "creating .venv"
    uv venv --quiet --python 3.11 .venv
fi
if ! fresh .venv/.ctrlgpt-stamp "$LOCK" pyproject.toml; then
    say "syncing .venv with $LOCK"
    uv pip sync --quiet --require-hashes --python .venv/bin/python "$LOCK"
    uv pip install --quiet --python .venv/bin/python --no-deps -e .
    stamp .venv/.ctrlgpt-stamp "$LOCK" pyproject.toml
fi

# doccano's own venv: its pins (Django 4, numpy<2, marshmallow<4) clash with the ML stack.
if [ ! -x .venv-doccano/bin/python ]; then
    say "creating .venv-doccano"
    uv venv --quiet --python 3.11 .venv-doccano
fi
if ! fresh .venv-doccano/.ctrlgpt-stamp deploy/doccano/requirements.lock; then
    say "syncing .venv-doccano with deploy/doccano/requirements.lock"
    uv pip sync --quiet --python .venv-doccano/bin/python deploy/doccano/requirements.lock
    stamp .venv-doccano/.ctrlgpt-stamp deploy/doccano/requirements.lock
fi

# Kafka: Maven resolves the broker's jars into ~/.m2; the classpath is remembered for deploy.services.
classpath="$CACHE/kafka-classpath.txt"
classpath_ok() {  # classpath_ok CLASSPATH_FILE POM
    [ -s "$1" ] && [ "$1" -nt "$2" ] || return 1
    local jar
    for jar in $(tr ':' ' ' <"$1"); do [ -e "$jar" ] || return 1; done
}
if ! classpath_ok "$classpath" deploy/kafka/pom.xml; then
    say "resolving the Kafka broker with Maven"
    resolve=(mvn -q -B -f deploy/kafka/pom.xml dependency:build-classpath "-Dmdep.outputFile=$classpath")
    "${resolve[@]}" -o >/dev/null 2>&1 || "${resolve[@]}"
    touch "$classpath"  # Maven leaves an unchanged file as it was, older than the pom
fi

# Kafka Connect and Debezium's PostgreSQL connector: the same way, their classpath remembered for deploy.connect.
connect_classpath="$CACHE/connect-classpath.txt"
if ! classpath_ok "$connect_classpath" deploy/connect/pom.xml; then
    say "resolving Kafka Connect and Debezium with Maven"
    resolve=(mvn -q -B -f deploy/connect/pom.xml dependency:build-classpath "-Dmdep.outputFile=$connect_classpath")
    "${resolve[@]}" -o >/dev/null 2>&1 || "${resolve[@]}"
    touch "$connect_classpath"
fi

# s3proxy, the local S3-compatible object store: the same way, its classpath remembered for deploy.objectstore.
objectstore_classpath="$CACHE/objectstore-classpath.txt"
if ! classpath_ok "$objectstore_classpath" deploy/objectstore/pom.xml; then
    say "resolving s3proxy with Maven"
    resolve=(mvn -q -B -f deploy/objectstore/pom.xml dependency:build-classpath "-Dmdep.outputFile=$objectstore_classpath")
    "${resolve[@]}" -o >/dev/null 2>&1 || "${resolve[@]}"
    touch "$objectstore_classpath"
fi

# Elasticsearch: the integ-test-zip from Maven Central, kept in ~/.m2.
es_version="$(.venv/bin/python -c 'from ctrlgpt.settings import Settings; print(Settings().es_version)')"
es_zip="$HOME/.m2/repository/org/elasticsearch/distribution/integ-test-zip/elasticsearch/$es_version/elasticsearch-$es_version.zip"
if [ ! -s "$es_zip" ]; then
    say "fetching Elasticsearch $es_version"
    mvn -q -B dependency:get -Dtransitive=false \
        "-Dartifact=org.elasticsearch.distribution.integ-test-zip:elasticsearch:$es_version:zip"
fi
