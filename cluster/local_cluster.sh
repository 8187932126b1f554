#!/usr/bin/env bash
# A Ray cluster of several nodes on this machine (head + workers on loopback), for trying
# `scaler submit` and `scaler run --address` without a cloud.  Ctrl-C stops exactly the
# processes it started (it never runs `ray stop`, which would end every Ray on the machine).
#
#   cluster/local_cluster.sh [--workers 1] [--cpus 2]     # --cpus: a whole number, as ray start's
#   # in another shell, the command it prints (the nodes use Ray's token authentication, so a
#   # client needs RAY_AUTH_MODE=token; the token is ~/.ray/auth_token, written if there is none):
#   RAY_AUTH_MODE=token .venv/bin/scaler submit search_spaces/oracle.yaml \
#       --address http://127.0.0.1:PORT --storage "$PWD/scaler_runs/cluster" --follow
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export RAY_USAGE_STATS_ENABLED=0
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"   # every node imports this checkout
exec "$PY" -m scaler.localcluster up "$@"
