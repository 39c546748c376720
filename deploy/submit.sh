#!/usr/bin/env bash
# Submit a winnow pipeline to a running Ray cluster as a Ray job.
#   deploy/submit.sh http://HEAD:8265 configs/commoncrawl.yaml [extra winnow run flags]
# The job's driver runs `winnow run CONFIG` unchanged: Ray sets RAY_ADDRESS for it, and winnow
# joins that cluster instead of starting a local one.
set -euo pipefail
address=${1:?usage: deploy/submit.sh RAY_DASHBOARD_URL CONFIG [winnow run flags]}
config=${2:?usage: deploy/submit.sh RAY_DASHBOARD_URL CONFIG [winnow run flags]}
shift 2
runtime_env=()
if [ "${WINNOW_SHIP_CODE:-0}" = 1 ]; then runtime_env=(--runtime-env "$(dirname "$0")/runtime_env.yaml"); fi
exec ray job submit --address "$address" "${runtime_env[@]}" -- winnow run "$config" "$@"
