#!/usr/bin/env bash
# The seed's demo on the local cluster: a warm pool of 10, ready to claim.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
"$here/cluster.sh" up
eval "$("$here/cluster.sh" env)"
(cd "$repo" && go build -o bin/kubectl-sbs ./cmd/kubectl-sbs)
kubectl apply -k "$repo/config/samples" >/dev/null
kubectl wait sbs/demo --for=jsonpath='{.status.availableReplicas}'=10 --timeout=180s >/dev/null
kubectl get sbs
cat <<MSG

The warm pool is ready. In another shell:

  $("$here/cluster.sh" env)
  kubectl get pods -l agents.kruise.io/sandboxset=demo -L agents.kruise.io/state,agents.kruise.io/claimed-by
  bin/kubectl-sbs claim demo --by agent-1        # or: kubectl label pod <pod> agents.kruise.io/claimed-by=agent-1
  kubectl get sbs -w                             # watch the pool dip and refill
  bin/kubectl-sbs get demo                       # the pool and who holds what
  make down                                      # stop everything

$("$here/cluster.sh" info)

MSG
