#!/usr/bin/env bash
# Submit a winnow pipeline to a running Ray cluster as a Ray job: the tested entrypoint
# (tests/test_cli.py::test_ray_job_submit_runs_winnow_unchanged) `winnow run CONFIG`, unchanged.
#
#   deploy/submit.sh http://HEAD:8265 [CONFIG] [extra `winnow run` flags]
#
# CONFIG is a path on the cluster's nodes: by default the image's /app/configs/commoncrawl.yaml
# (deploy/Dockerfile copies the repo to /app). Ray sets RAY_ADDRESS for the job's driver, and
# winnow joins that cluster instead of starting a local one. Every node runs the winnow image
# (deploy/Dockerfile); deploy/runtime_env.yaml only adds environment variables.
# WINNOW_RUNTIME_ENV=0 submits without it (exactly the tested command line).
set -euo pipefail
address=${1:?usage: deploy/submit.sh RAY_DASHBOARD_URL [CONFIG] [winnow run flags]}
config=${2:-/app/configs/commoncrawl.yaml}
shift $(( $# >= 2 ? 2 : 1 ))
runtime_env=()
if [ "${WINNOW_RUNTIME_ENV:-1}" = 1 ]; then runtime_env=(--runtime-env "$(dirname "$0")/runtime_env.yaml"); fi
exec "${RAY:-ray}" job submit --address "$address" "${runtime_env[@]}" -- winnow run "$config" "$@"
