#!/usr/bin/env bash
# Sets up the project's virtual environment (once per change of setup.py) and
# runs one of the Quick start jobs:
#   bash quickstart.sh demo [FLAGS]   demo area end to end on DirectRunner, into demo-output/
#   bash quickstart.sh test [PYTEST ARGS]   the whole test suite
#   bash quickstart.sh lint   ruff check, ruff format --check, mypy and mypy --strict on
#                             pipeline/ and footprints/ (what CI runs first)
# Everything the project needs is installed here, from PyPI and Debian's packages.
set -euo pipefail
cd "$(dirname "$0")"

VENV=${FOOTPRINTS_VENV:-.venv}
PYTHON=${PYTHON:-python3}
stamp="$VENV/.installed-$(cat setup.py pyproject.toml | sha1sum | cut -c1-12)"

if [ ! -f "$stamp" ]; then
  echo "quickstart: installing footprints and its dependencies into $VENV (first run: several minutes)"
  "$PYTHON" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 12) else "footprints needs Python 3.10 to 3.12; set PYTHON=python3.11")'
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip wheel
  "$VENV/bin/python" -m pip install --quiet -e ".[test]"
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi

job=${1:-}
shift || true
case "$job" in
  demo)
    exec "$VENV/bin/footprints" demo --output "${FOOTPRINTS_DEMO_OUTPUT:-demo-output}" "$@"
    ;;
  test)
    # The report test renders report.html in a real headless browser: Debian's
    # Chromium, installed here when missing and this user can install packages.
    if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 \
        && [ "$(id -u)" = 0 ]; then
      echo "quickstart: installing Debian's chromium for the report test"
      apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null
    fi
    # The GIS client tests open the outputs in Debian's QGIS (its Python bindings, run by
    # the system python3, offscreen) and read every raster with GDAL's command-line tools.
    if { ! /usr/bin/python3 -c 'import qgis.core' >/dev/null 2>&1 \
        || ! command -v gdalinfo >/dev/null 2>&1; } && command -v apt-get >/dev/null 2>&1 \
        && [ "$(id -u)" = 0 ]; then
      echo "quickstart: installing Debian's QGIS Python bindings and gdal-bin for the GIS client tests"
      apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends python3-qgis qgis-providers gdal-bin >/dev/null
    fi
    # The engine tests run a local Flink cluster and Prism, fetched once into .tools/
    # (PyPI, Maven Central, the Go module proxy) where Java, Maven and Go are installed;
    # without them those tests skip (in CI, CI=true, they fail instead).
    if command -v java >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1 \
        && command -v go >/dev/null 2>&1; then
      PYTHON="$VENV/bin/python" timeout 1200 bash deploy/flink/fetch-engines.sh
    fi
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  lint)
    # All three run, so one pass shows everything to fix; any failure fails the job.
    # Their settings are in pyproject.toml; .pre-commit-config.yaml runs the same.
    status=0
    "$VENV/bin/ruff" check . || status=1
    "$VENV/bin/ruff" format --check . || status=1
    "$VENV/bin/mypy" || status=1
    # pipeline/ and the floor under it (footprints/) are typed strictly: every stage's
    # boundary has its types (docs/architecture.md, "Floors of pipeline/").
    "$VENV/bin/mypy" --strict pipeline footprints || status=1
    exit "$status"
    ;;
  setup)
    echo "quickstart: $VENV is ready; activate it with: source $VENV/bin/activate"
    ;;
  *)
    echo "usage: bash quickstart.sh demo|test|lint|setup [ARGS]" >&2
    exit 2
    ;;
esac
