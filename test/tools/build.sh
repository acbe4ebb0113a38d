#!/usr/bin/env bash
# Builds the control-plane binaries this project tests and runs against, from
# the Go module proxy, into a versioned cache outside the clone. A binary that
# is already cached is reused, so only the first run on a machine is slow
# (about 12 minutes on 2 cores); later runs take seconds.
#
# Usage: build.sh <what>...   where <what> is envtest (kube-apiserver, etcd)
#                              or cluster (envtest + scheduler, controller-manager, kwok)
# Prints nothing; the binaries land in "$(build.sh --dir)".
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
K8S_VERSION=v1.37.2
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.7.0
cache=${SANDBOXSET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sandboxset}
dir="$cache/bin/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION"

# build <module dir> <package> <binary name>: go build into the cache, atomically.
build() {
  local out="$dir/$3"
  [ -x "$out" ] && return 0
  mkdir -p "$dir"
  echo "building $3 from $2 (cached in $dir)" >&2
  (cd "$here/$1" && go build -trimpath -ldflags=-s -o "$out.tmp.$$" "$2")
  mv -f "$out.tmp.$$" "$out"
}

for what in "$@"; do
  case "$what" in
    --dir) echo "$dir" ;;
    envtest)
      build kubernetes k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver
      build etcd go.etcd.io/etcd/server/v3 etcd
      ;;
    cluster)
      build kubernetes k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver
      build etcd go.etcd.io/etcd/server/v3 etcd
      build kubernetes k8s.io/kubernetes/cmd/kube-scheduler kube-scheduler
      build kubernetes k8s.io/kubernetes/cmd/kube-controller-manager kube-controller-manager
      build kwok sigs.k8s.io/kwok/cmd/kwok kwok
      build kwok sigs.k8s.io/kwok/cmd/kwokctl kwokctl
      ;;
    *) echo "build.sh: unknown target $what (want envtest, cluster or --dir)" >&2; exit 2 ;;
  esac
done
