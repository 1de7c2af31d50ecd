#!/usr/bin/env bash
# The end-to-end run on a real cluster: a kind cluster of four nodes, the
# meshguard image built and loaded, the Helm chart installed, policies.yaml
# applied, then the same connectivity check as `make demo` — every ordered
# pair of nodes on every port the policies name, measured with real
# connections through each node's mesh interface and compared with
# `meshguard check` — before and after a live quarantine.
#
# Needs Docker, kind, kubectl, helm, cargo and network access (images,
# crates). The development machines have no Docker engine: this runs in
# GitHub Actions (.github/workflows/kind.yaml) or on your workstation.
#
#   e2e/kind/run.sh              create, install, check, delete the cluster
#   KEEP_CLUSTER=1 e2e/kind/run.sh   leave the cluster up afterwards
#
# Exit 0 only when the operator enforced the policies on every node and the
# measured matrix equals the prediction, before and after the change.
set -euo pipefail
cd "$(dirname "$0")/../.."

cluster="${MESHGUARD_KIND_CLUSTER:-meshguard-e2e}"
namespace=meshguard-system
image="${MESHGUARD_IMAGE:-meshguard:e2e}"
work="$(mktemp -d "${TMPDIR:-/tmp}/meshguard-kind.XXXXXX")"
export MESHGUARD_AGENT_PODS="$work/agent-pods"
export KUBECONFIG="$work/kubeconfig"

log() { printf '\n== %s\n' "$*"; }

for tool in docker kind kubectl helm cargo; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "run.sh: $tool is not installed; this path needs Docker, kind, kubectl, helm and cargo (e2e/kind/README.md)" >&2
    exit 2
  fi
done
if [ "$cluster" != meshguard-e2e ]; then
  echo "run.sh: policies.yaml and roles.txt name the nodes of cluster meshguard-e2e" >&2
  exit 2
fi

# On failure: everything a person needs to see why, then the cluster goes
# (unless KEEP_CLUSTER=1).
finish() {
  local status=$?
  if [ "$status" -ne 0 ]; then
    log "failed (exit $status): diagnostics"
    kubectl get nodes -o wide || true
    kubectl -n "$namespace" get pods -o wide || true
    kubectl get meshnodes,meshpolicies,nodepolicies -o wide || true
    kubectl get meshpolicies -o yaml | grep -A30 '^  status:' || true
    kubectl -n "$namespace" logs -l app.kubernetes.io/component=operator --tail=200 --prefix || true
    kubectl -n "$namespace" logs -l app.kubernetes.io/component=agent --all-containers --tail=100 --prefix || true
    kubectl get events -A --sort-by=.lastTimestamp | tail -40 || true
  fi
  if [ "${KEEP_CLUSTER:-0}" = 1 ]; then
    echo "cluster $cluster kept: export KUBECONFIG=$KUBECONFIG"
  else
    kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
    rm -rf "$work"
  fi
  exit "$status"
}
trap finish EXIT

# "<name> <spec.revision> <status.observedRevision>" per NodePolicy.
revisions() {
  kubectl get nodepolicies \
    -o jsonpath='{range .items[*]}{.metadata.name} {.spec.revision} {.status.observedRevision}{"\n"}{end}'
}

# After a change: the operator has recomputed (some NodePolicy's spec
# revision differs from before; an agent catching up on an older revision
# does not count), the spec revisions have stayed put for 3 s (one pass
# writes every NodePolicy it changes within that), every agent reports its
# NodePolicy's revision applied, and every MeshPolicy is observed at its
# generation, Accepted, TestsPassed and Enforced (a rejected policy targets
# no node, so Enforced alone would pass).
converge() {
  local before started=$SECONDS now="" specs="" last="" stable_since=$SECONDS
  before="$(awk '{ print $1, $2 }' <<<"$1")"
  for _ in $(seq 240); do
    now="$(revisions)"
    specs="$(awk '{ print $1, $2 }' <<<"$now")"
    if [ "$specs" != "$last" ]; then
      last="$specs"
      stable_since=$SECONDS
    fi
    local applied=yes
    if awk '$2 != $3 { found = 1 } END { exit !found }' <<<"$now"; then applied=no; fi
    if [ "$specs" != "$before" ] && [ "$applied" = yes ] \
      && [ "$(grep -c . <<<"$now")" -eq "$nodes" ] && [ $((SECONDS - stable_since)) -ge 3 ]; then
      echo "every node enforces its NodePolicy ($((SECONDS - started)) s after the change, 3 s of it settling)"
      wait_policies
      return 0
    fi
    sleep 0.5
  done
  echo "NodePolicies not recomputed and applied:" >&2
  echo "$now" >&2
  return 1
}

wait_policies() {
  local name generation
  for name in $(kubectl get meshpolicies -o jsonpath='{.items[*].metadata.name}'); do
    generation="$(kubectl get meshpolicy "$name" -o jsonpath='{.metadata.generation}')"
    kubectl wait meshpolicy "$name" --for=jsonpath='{.status.observedGeneration}'="$generation" --timeout=60s
  done
  for condition in Accepted TestsPassed Enforced; do
    kubectl wait meshpolicy --all --for=condition="$condition" --timeout=60s
  done
}

log "building the meshguard CLI and meshguard-cluster-check"
cargo build --release -q -p meshguard-cli --bin meshguard -p meshguard-e2e --bin meshguard-cluster-check
target="${CARGO_TARGET_DIR:-target}/release"

log "building $image (Dockerfile, target e2e)"
docker build --provenance=false --target e2e -t "$image" .

log "creating kind cluster $cluster"
kind create cluster --name "$cluster" --config e2e/kind/cluster.yaml --kubeconfig "$KUBECONFIG" --wait 120s
# Through an archive: `kind load docker-image` fails with Docker's
# containerd image store (the default since Docker 29).
docker save "$image" -o "$work/image.tar"
kind load image-archive "$work/image.tar" --name "$cluster"

log "installing the chart"
kubectl apply -f deploy/namespace.yaml
helm upgrade --install meshguard charts/meshguard \
  --namespace "$namespace" \
  --set-string image.repository="${image%:*}" --set-string image.tag="${image##*:}" \
  --set image.pullPolicy=Never \
  --set operator.replicas=2 \
  --wait --timeout 5m
kubectl -n "$namespace" rollout status daemonset/meshguard-agent --timeout=3m
kubectl -n "$namespace" rollout status deployment/meshguard-operator --timeout=3m
kubectl -n "$namespace" get pods -l app.kubernetes.io/component=agent \
  -o jsonpath='{range .items[*]}{.spec.nodeName} {.metadata.name}{"\n"}{end}' > "$MESHGUARD_AGENT_PODS"

nodes=$(kubectl get nodes -o name | wc -l)
log "waiting for $nodes MeshNodes with mesh IPs"
for _ in $(seq 120); do
  with_ip=$(kubectl get meshnodes -o jsonpath='{range .items[*]}{.status.meshIP}{"\n"}{end}' | grep -c . || true)
  [ "$with_ip" -eq "$nodes" ] && break
  sleep 1
done
kubectl get meshnodes -o wide
[ "$with_ip" -eq "$nodes" ] || { echo "only $with_ip of $nodes MeshNodes have a mesh IP" >&2; exit 1; }

log "labelling the members and applying e2e/kind/policies.yaml"
grep -v '^#' e2e/kind/roles.txt | while read -r node role; do
  kubectl label meshnode "$node" "role=$role" --overwrite
done
before="$(revisions)"
kubectl apply -f e2e/kind/policies.yaml

check() {
  rm -rf "$work/inputs" && mkdir -p "$work/inputs"
  kubectl get meshnodes -o yaml > "$work/inputs/meshnodes.yaml"
  kubectl get meshpolicies -o yaml > "$work/inputs/meshpolicies.yaml"
  "$target/meshguard-cluster-check" \
    --inputs "$work/inputs" \
    --exec "e2e/kind/on-node.sh {node}" \
    --probe mesh-probe \
    --meshguard "$target/meshguard"
}

converge "$before"
log "connectivity, measured against meshguard check"
check

quarantined=meshguard-e2e-worker3
log "live change: quarantine $quarantined"
before="$(revisions)"
kubectl label meshnode "$quarantined" meshguard.io/quarantine=true --overwrite
converge "$before"
check
log "passed: no disagreement between meshguard check and the cluster, before and after the change"

log "helm uninstall: the pre-delete hook tears down every node"
helm uninstall meshguard --namespace "$namespace" --wait --timeout 5m
for node in $(kind get nodes --name "$cluster"); do
  # What the agents made: the interface, chains and hooks, sets, routes.
  left="$(docker exec "$node" sh -c "
    ip -o link show meshguard0 2>/dev/null
    iptables-save 2>/dev/null | grep MESHGUARD
    ip6tables-save 2>/dev/null | grep MESHGUARD
    ipset list -n 2>/dev/null | grep '^mg'
    ip route show proto 109 2>/dev/null
    ls /sys/fs/bpf/meshguard 2>/dev/null
  " || true)"
  if [ -n "$left" ]; then
    echo "after helm uninstall, $node still has:" >&2
    echo "$left" >&2
    exit 1
  fi
done
remaining="$(kubectl -n "$namespace" get daemonsets,jobs -o name)"
[ -z "$remaining" ] || { echo "left in $namespace: $remaining" >&2; exit 1; }
log "passed: helm uninstall left nothing on $(kind get nodes --name "$cluster" | wc -l) nodes"
