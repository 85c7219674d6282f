#!/usr/bin/env bash
# Builds and pushes the footprints worker image, and writes the Flex Template specs.
#
#   deploy/dataflow/build.sh image      PROJECT REGION [TAG]   # docker build + push
#   deploy/dataflow/build.sh cloudbuild PROJECT REGION [TAG]   # same, on Cloud Build (no local Docker)
#   deploy/dataflow/build.sh templates  PROJECT REGION BUCKET [TAG]  # gs://BUCKET/templates/{score,segment}.json
#
# The image goes to Artifact Registry: REGION-docker.pkg.dev/PROJECT/footprints/worker:TAG
# (TAG defaults to the git commit). Create the repository once:
#   gcloud artifacts repositories create footprints --repository-format=docker --location=REGION
set -euo pipefail
cd "$(dirname "$0")/../.."

what=${1:?usage: build.sh image|cloudbuild|templates PROJECT REGION [BUCKET] [TAG]}
project=${2:?PROJECT}
region=${3:?REGION}
if [ "$what" = templates ]; then
  bucket=${4:?BUCKET (gs://NAME)}
  tag=${5:-$(git rev-parse --short HEAD)}
else
  tag=${4:-$(git rev-parse --short HEAD)}
fi
image="${region}-docker.pkg.dev/${project}/footprints/worker:${tag}"

case "$what" in
  image)
    gcloud auth configure-docker "${region}-docker.pkg.dev" --quiet
    # Dataflow workers are x86-64.
    docker build --platform linux/amd64 -f deploy/dataflow/Dockerfile -t "$image" .
    docker push "$image"
    ;;
  cloudbuild)
    gcloud builds submit --project "$project" --region "$region" \
        --config deploy/dataflow/cloudbuild.yaml --substitutions "_IMAGE=${image}" .
    ;;
  templates)
    for job in score segment; do
      gcloud dataflow flex-template build "${bucket%/}/templates/${job}.json" \
          --project "$project" \
          --image "$image" \
          --sdk-language PYTHON \
          --metadata-file "deploy/dataflow/templates/${job}-metadata.json"
    done
    ;;
  *)
    echo "usage: build.sh image|cloudbuild|templates PROJECT REGION [BUCKET] [TAG]" >&2
    exit 2
    ;;
esac
echo "$image"
