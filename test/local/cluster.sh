#!/usr/bin/env bash
# The whole system on one machine, with no container runtime: a real
# kube-apiserver, etcd, kube-scheduler and kube-controller-manager run by
# kwokctl as local processes, simulated nodes whose Pods turn Ready after a
# delay, and the operator's manager as a local process, installed from
# config/ like in a cluster (CRD, RBAC, webhook configurations). Every server
# listens on 127.0.0.1.
#
# Usage: cluster.sh up | down | start-manager | stop-manager | restart-apiserver | env | info | kwokctl <args>
#
# restart-apiserver stops kube-apiserver and etcd and starts them again, as a
# control-plane restart does: the scheduler, the controller-manager and the
# simulated kubelets (kwok) keep running and reconnect. Restarting kwok too
# would not model a real restart, and the new kwok instance cannot take over
# the old one's node leases, so its nodes would run no new Pods.
#
# start-manager and stop-manager act on manager instance MANAGER_INSTANCE
# (default 0, the one `up` starts). Instance i uses the metrics and health
# ports plus 10*i, so several can run at once, e.g. for leader election
# (LEADER_ELECT=true); only one of them can serve the webhooks.
#
# Settings (environment):
#   CLUSTER_NAME     kwok cluster name (default sandboxset)
#   NODES            simulated nodes (default 10)
#   READY_DELAY_MS   least time from scheduling to Ready (default 1000)
#   READY_JITTER_MS  most time from scheduling to Ready (default 3000)
#   WEBHOOK_PORT     the manager's webhook port on 127.0.0.1 (default 9443)
#   METRICS_PORT     the manager's metrics port (default 9080; not 8080, where kubectl
#                    looks for an API server when it has no kubeconfig)
#   PROBE_PORT       the manager's health port (default 9081)
#   DISABLE_QPS_LIMITS=true  lift the control plane components' client QPS limits
#   MANAGER_ARGS     extra manager flags
#   MANAGER_MEMORY_LIMIT_MIB  run the manager as if in a container with this
#                    memory limit: with GOMEMLIMIT at 90% of it, what the
#                    manager sets itself from its cgroup (default: none)
#   MANAGER_INSTANCE which manager instance start-/stop-manager act on (default 0)
#   LEADER_ELECT     run that manager with leader election (default false)
#   OPERATOR=none    `up` starts the cluster alone: no operator, no manager
#                    (the install suite applies config/default itself)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
CLUSTER_NAME=${CLUSTER_NAME:-sandboxset}
NODES=${NODES:-10}
READY_DELAY_MS=${READY_DELAY_MS:-1000}
READY_JITTER_MS=${READY_JITTER_MS:-3000}
WEBHOOK_PORT=${WEBHOOK_PORT:-9443}
METRICS_PORT=${METRICS_PORT:-9080}
PROBE_PORT=${PROBE_PORT:-9081}
cache=${SANDBOXSET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sandboxset}
state="$cache/local/$CLUSTER_NAME"
export KWOK_WORKDIR="$cache/kwok"
bins=$("$repo/test/tools/build.sh" --dir)
kubeconfig="$state/kubeconfig"
instance=${MANAGER_INSTANCE:-0}
suffix=$([ "$instance" = 0 ] && echo "" || echo "-$instance")
pidfile="$state/manager$suffix.pid"
logfile="$state/manager$suffix.log"
probe_port=$((PROBE_PORT + 10 * instance))
namespace=sandboxset-system
serviceaccount=sandboxset-controller-manager

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
k() { kubectl --kubeconfig "$kubeconfig" "$@"; }

up() {
  "$repo/test/tools/build.sh" cluster
  down_cluster
  mkdir -p "$state"
  log "starting cluster $CLUSTER_NAME ($NODES nodes, Pods Ready after ${READY_DELAY_MS}-${READY_JITTER_MS} ms)"
  sed -e "s/READY_DELAY_MS/$READY_DELAY_MS/" -e "s/READY_JITTER_MS/$READY_JITTER_MS/" "$here/kwok.yaml.tmpl" > "$state/kwok.yaml"
  local extra=()
  [ "${DISABLE_QPS_LIMITS:-false}" = true ] && extra+=(--disable-qps-limits)
  "$bins/kwokctl" create cluster --name "$CLUSTER_NAME" --runtime binary --config "$state/kwok.yaml" \
    --kube-apiserver-binary "$bins/kube-apiserver" --etcd-binary "$bins/etcd" \
    --kube-controller-manager-binary "$bins/kube-controller-manager" --kube-scheduler-binary "$bins/kube-scheduler" \
    --kwok-controller-binary "$bins/kwok" --kubeconfig "$kubeconfig" --wait 120s "${extra[@]}" >"$state/kwokctl.log" 2>&1 \
    || { cat "$state/kwokctl.log" >&2; exit 1; }
  "$bins/kwokctl" scale node --name "$CLUSTER_NAME" --replicas "$NODES" >>"$state/kwokctl.log" 2>&1
  if [ "${OPERATOR:-}" = none ]; then
    log "cluster $CLUSTER_NAME is up, with no operator; KUBECONFIG=$kubeconfig"
    return 0
  fi

  log "installing the operator from config/local (CRD, RBAC, webhook configurations)"
  k kustomize "$repo/config/local" > "$state/operator.yaml"
  # The CRD and RBAC first; the webhook configurations once the manager serves them.
  grep -v '^$' "$state/operator.yaml" | awk 'BEGIN{RS="\n---\n"} !/kind: (Mutating|Validating)WebhookConfiguration/ {print $0 "\n---"}' | k apply --server-side -f - >/dev/null
  # kubectl wait fails outright if the CRD has no conditions yet; poll instead.
  for _ in $(seq 1 300); do
    [ "$(k get crd sandboxsets.agents.kruise.io -o jsonpath='{.status.conditions[?(@.type=="Established")].status}' 2>/dev/null)" = True ] && break
    sleep 0.2
  done
  start_manager
  sed -e "s#WEBHOOK_ADDRESS#127.0.0.1:$WEBHOOK_PORT#" -e "s#CA_BUNDLE#$(base64 -w0 < "$state/certs/ca.crt")#" "$state/operator.yaml" \
    | awk 'BEGIN{RS="\n---\n"} /kind: (Mutating|Validating)WebhookConfiguration/ {print $0 "\n---"}' | k apply --server-side -f - >/dev/null
  log "cluster $CLUSTER_NAME is up; KUBECONFIG=$kubeconfig"
}

# start_manager runs the manager as the operator's own ServiceAccount, with
# exactly the RBAC config/rbac grants, and waits until its webhooks serve.
start_manager() {
  stop_manager
  mkdir -p "$state/bin"
  (cd "$repo" && go build -o "$state/bin/manager" ./cmd/manager)
  local server ca token
  server=$(k config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')
  ca=$(k config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority}')
  token=$(k -n "$namespace" create token "$serviceaccount" --duration 48h)
  local mk="$state/manager.kubeconfig"
  kubectl config --kubeconfig "$mk" set-cluster local --server "$server" --certificate-authority "$ca" --embed-certs >/dev/null
  kubectl config --kubeconfig "$mk" set-credentials manager --token "$token" >/dev/null
  kubectl config --kubeconfig "$mk" set-context local --cluster local --user manager >/dev/null
  kubectl config --kubeconfig "$mk" use-context local >/dev/null
  local memlimit=()
  if [ -n "${MANAGER_MEMORY_LIMIT_MIB:-}" ]; then
    memlimit=(env "GOMEMLIMIT=$((MANAGER_MEMORY_LIMIT_MIB * 1024 * 1024 * 9 / 10))")
  fi
  # shellcheck disable=SC2086 # MANAGER_ARGS is a list of flags
  "${memlimit[@]}" "$state/bin/manager" --kubeconfig "$mk" \
    --leader-elect="${LEADER_ELECT:-false}" --leader-elect-namespace "$namespace" \
    --webhook-self-signed --webhook-host 127.0.0.1 --webhook-port "$WEBHOOK_PORT" --webhook-cert-dir "$state/certs" \
    --metrics-bind-address "127.0.0.1:$((METRICS_PORT + 10 * instance))" --health-probe-bind-address "127.0.0.1:$probe_port" \
    ${MANAGER_ARGS:-} >>"$logfile" 2>&1 &
  echo $! > "$pidfile"
  for _ in $(seq 1 300); do
    if curl -sf "http://127.0.0.1:$probe_port/readyz" >/dev/null 2>&1; then
      log "manager $instance is ready (pid $(cat "$pidfile"), log $logfile)"
      return 0
    fi
    kill -0 "$(cat "$pidfile")" 2>/dev/null || { tail -20 "$logfile" >&2; exit 1; }
    sleep 0.1
  done
  log "manager $instance did not become ready; see $logfile"; exit 1
}

stop_manager() {
  stop_pid "$pidfile"
}

stop_pid() {
  [ -f "$1" ] || return 0
  local pid; pid=$(cat "$1")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$1"
}

restart_apiserver() {
  local pids="$KWOK_WORKDIR/clusters/$CLUSTER_NAME/pids"
  [ -f "$pids/kube-apiserver.pid" ] || { log "no kube-apiserver of cluster $CLUSTER_NAME is running"; exit 1; }
  stop_pid "$pids/kube-apiserver.pid"
  stop_pid "$pids/etcd.pid"
  # kwokctl starts only the components that are not running. Its own --wait
  # checks readiness with a kubectl it would have to download; ask ours.
  "$bins/kwokctl" start cluster --name "$CLUSTER_NAME" >>"$state/kwokctl.log" 2>&1
  for _ in $(seq 1 600); do
    [ "$(k get --raw /healthz 2>/dev/null)" = ok ] && return 0
    sleep 0.2
  done
  log "kube-apiserver of cluster $CLUSTER_NAME did not become healthy"; exit 1
}

down_cluster() {
  for f in "$state"/manager*.pid; do stop_pid "$f"; done
  "$bins/kwokctl" delete cluster --name "$CLUSTER_NAME" >/dev/null 2>&1 || true
  rm -rf "$state"
}

case "${1:-}" in
  up) up ;;
  down) down_cluster; log "cluster $CLUSTER_NAME is gone" ;;
  start-manager) start_manager ;;
  stop-manager) stop_manager ;;
  restart-apiserver) restart_apiserver ;;
  env) echo "export KUBECONFIG=$kubeconfig" ;;
  info)
    echo "manager metrics  http://127.0.0.1:$((METRICS_PORT + 10 * instance))/metrics"
    echo "manager log      $logfile"
    echo "kubeconfig       $kubeconfig" ;;
  kwokctl) shift; "$bins/kwokctl" "$@" --name "$CLUSTER_NAME" >>"$state/kwokctl.log" 2>&1 ;;
  *) echo "usage: $0 up | down | start-manager | stop-manager | restart-apiserver | env | info | kwokctl <args>" >&2; exit 2 ;;
esac
