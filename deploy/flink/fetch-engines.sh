#!/usr/bin/env bash
# Fetches the engines the engine tests run (tests/test_engines_*.py) into a local cache:
#   bash deploy/flink/fetch-engines.sh [CACHE]      (default: .tools/, gitignored)
#
#   Flink   the Flink distribution's jars from PyPI (apache-flink-libraries, pip download)
#   job     Beam's Flink job server: beam-runners-flink-<flink> and its dependencies from
#   server  Maven Central (mvn, deploy/flink/job-server/pom.xml)
#   Prism   Beam's Go Prism runner, built from the Go module proxy (go install)
#
# Idempotent: each part is fetched once; CACHE/versions.json records what was fetched (the
# tests read their paths and versions from it). Needs python3 (the project's venv), java 17,
# mvn and go on PATH.
set -euo pipefail
cd "$(dirname "$0")/../.."

CACHE=${1:-${FOOTPRINTS_ENGINES:-.tools}}
PYTHON=${PYTHON:-${FOOTPRINTS_VENV:-.venv}/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
# Versions. Flink 1.19: one of the Flink versions Beam 2.77 supports, and the newest for which
# Maven Central serves a Beam Java Flink runner with its job service (see job-server/pom.xml).
FLINK_VERSION=${FLINK_VERSION:-1.19.3}
FLINK_MINOR=${FLINK_VERSION%.*}
BEAM_JAVA_VERSION=${BEAM_JAVA_VERSION:-2.62.0}
PRISM_VERSION=${PRISM_VERSION:-v$("$PYTHON" -c 'import apache_beam; print(apache_beam.__version__)')}

mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
flink_home=$CACHE/flink-$FLINK_VERSION
job_server=$CACHE/beam-flink-$FLINK_MINOR-job-server-$BEAM_JAVA_VERSION
prism=$CACHE/prism-$PRISM_VERSION/prism

if [ ! -f "$flink_home/lib/flink-dist-$FLINK_VERSION.jar" ]; then
  echo "fetch-engines: Flink $FLINK_VERSION (PyPI apache-flink-libraries)"
  tmp=$(mktemp -d)
  "$PYTHON" -m pip download --quiet --no-deps --no-binary :all: -d "$tmp" \
      "apache-flink-libraries==$FLINK_VERSION"
  tar xzf "$tmp"/apache-flink-libraries-"$FLINK_VERSION".tar.gz -C "$tmp"
  rm -rf "$flink_home"
  mv "$tmp/apache-flink-libraries-$FLINK_VERSION/deps" "$flink_home"
  rm -rf "$tmp"
fi

if [ ! -f "$job_server/.complete" ]; then
  echo "fetch-engines: Beam $BEAM_JAVA_VERSION Flink $FLINK_MINOR job server (Maven Central)"
  rm -rf "$job_server"
  mvn -q -B -f deploy/flink/job-server/pom.xml dependency:copy-dependencies \
      -Dbeam.java.version="$BEAM_JAVA_VERSION" -Dflink.minor="$FLINK_MINOR" \
      -DincludeScope=runtime -DoutputDirectory="$job_server/lib"
  touch "$job_server/.complete"
fi

if [ ! -x "$prism" ]; then
  echo "fetch-engines: Prism $PRISM_VERSION (Go module proxy)"
  GOBIN=$(dirname "$prism") GOFLAGS=-mod=mod go install \
      "github.com/apache/beam/sdks/v2/go/cmd/prism@$PRISM_VERSION"
fi

cat > "$CACHE/versions.json" <<JSON
{
  "flink": {"flink": "$FLINK_VERSION", "beam_java_job_server": "$BEAM_JAVA_VERSION",
            "paths": {"flink_home": "$flink_home", "job_server_lib": "$job_server/lib"}},
  "prism": {"prism": "$PRISM_VERSION", "paths": {"binary": "$prism"}}
}
JSON
echo "fetch-engines: ready in $CACHE (versions.json)"
