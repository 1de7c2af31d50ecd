#!/usr/bin/env bash
# on-node.sh NODE PROGRAM [ARGS...]: runs PROGRAM in the meshguard agent pod
# on NODE. The agent pod uses the node's network namespace, so a connection
# made here leaves from the node, through its mesh interface. This is the
# `--exec` of meshguard-cluster-check in a cluster.
set -euo pipefail
node="$1"
shift
namespace="${MESHGUARD_NAMESPACE:-meshguard-system}"
pod=""
# run.sh writes "<node> <pod>" lines once, instead of a lookup per probe.
if [ -n "${MESHGUARD_AGENT_PODS:-}" ] && [ -f "$MESHGUARD_AGENT_PODS" ]; then
  pod="$(awk -v n="$node" '$1 == n { print $2 }' "$MESHGUARD_AGENT_PODS")"
fi
if [ -z "$pod" ]; then
  pod="$(kubectl -n "$namespace" get pods \
    -l app.kubernetes.io/component=agent \
    --field-selector "spec.nodeName=$node" \
    -o jsonpath='{.items[*].metadata.name}')"
  pod="${pod%% *}"
fi
if [ -z "$pod" ]; then
  echo "on-node.sh: no meshguard agent pod on node $node" >&2
  exit 2
fi
# -i: a server started here stops when its starter closes stdin.
exec kubectl -n "$namespace" exec -i "$pod" -c agent -- "$@"
