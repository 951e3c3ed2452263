#!/usr/bin/env bash
# Distributed clip feature extraction through torchrun:
#   bash tools/misc/dist_clip_feature_extraction.sh CONFIG CHECKPOINT GPUS [featx arguments...]
# Several machines: set NNODES, NODE_RANK and MASTER_ADDR (and PORT, default 29500) on each.
set -euo pipefail
if [ $# -lt 3 ]; then
    echo "usage: $0 CONFIG CHECKPOINT GPUS [featx arguments...]" >&2
    exit 2
fi
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
shift 3
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PYTHON=${PYTHON:-python}
# A checkout runs its own featx; a pip-installed featx is used where the checkout has none.
if [ -d "$REPO/featx" ]; then
    export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
fi
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" \
    --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --master_port="${PORT:-29500}" \
    --nproc_per_node="$GPUS" \
    -m featx.cli "$CONFIG" "$CHECKPOINT" --launcher pytorch "$@"
