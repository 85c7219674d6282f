#!/usr/bin/env bash
# Submits footprints score|segment|prepare to a Flink cluster through Beam's job server.
#
#   deploy/flink/submit.sh JOB JOB_ENDPOINT [PARALLELISM] -- FOOTPRINTS_FLAGS...
#   deploy/flink/submit.sh score localhost:8099 4 -- --chips '/data/chips/*.tfrecord' \
#       --model /data/models/classifier --residential-fraction 0.35 --output /data/runs/a
#
# The pipeline is built here (this machine needs footprints installed, same Beam and Python
# as the image) and runs in the worker pool next to each task manager (EXTERNAL environment
# at localhost:50000, as seen from the task manager). Paths are read by the workers: use
# shared storage (gs://, s3://, or the /data volume of docker-compose.yml).
# ARTIFACT_ENDPOINT (default: the job server's host, port 8098) and WORKER_POOL (default
# localhost:50000, the sidecar) override the two fixed endpoints; CI's local cluster
# (tests/test_engines_flink.py) runs this script with both set to its loopback ports.
# pre_optimize=all: the SDK fuses the job into stages itself; the Flink job server's fuser
# (Beam Java 2.62) fails prepare's graph (apache/beam#34647).
set -euo pipefail
job=${1:?usage: submit.sh score|segment|prepare JOB_ENDPOINT [PARALLELISM] -- FLAGS}
endpoint=${2:?JOB_ENDPOINT, e.g. localhost:8099}
parallelism=${3:-4}
shift 3 2>/dev/null || shift 2
[ "${1:-}" = "--" ] && shift
exec footprints "$job" "$@" \
    --runner=PortableRunner \
    --job_endpoint="$endpoint" \
    --artifact_endpoint="${ARTIFACT_ENDPOINT:-${endpoint%:*}:8098}" \
    --environment_type=EXTERNAL \
    --environment_config="${WORKER_POOL:-localhost:50000}" \
    --sdk_worker_parallelism="$parallelism" \
    --parallelism="$parallelism" \
    --experiments=pre_optimize=all
