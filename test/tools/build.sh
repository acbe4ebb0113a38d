#!/usr/bin/env bash
# Builds the control-plane binaries this project tests and runs against, from
# the Go module proxy, into a versioned cache outside the clone. A binary that
# is already cached is reused, so only the first run on a machine is slow
# (about 12 minutes on 2 cores); later runs take seconds.
#
# Usage: build.sh <what>...   where <what> is envtest (kube-apiserver, etcd),
#                              cluster (envtest + scheduler, controller-manager, kwok),
#                              promtool (from Debian's prometheus package)
#                              or python-client (Debian's python3-kubernetes, for
#                              the Python agent example in api/python)
# Prints nothing; the binaries land in "$(build.sh --dir)", promtool at
# "$(build.sh --promtool)", and the Python client in the directory that
# "$(build.sh --pythonpath)" prints, for PYTHONPATH.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
K8S_VERSION=v1.37.2
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.7.0
PROMETHEUS_DEB_VERSION=2.42.0+ds-5+b6
PYTHON_KUBERNETES_DEB_VERSION=22.6.0-2
cache=${SANDBOXSET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sandboxset}
dir="$cache/bin/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION"
promtool="$cache/bin/prometheus-$PROMETHEUS_DEB_VERSION/promtool"
pythonpath="$cache/python/python3-kubernetes-$PYTHON_KUBERNETES_DEB_VERSION"

# build <module dir> <package> <binary name>: go build into the cache, atomically.
build() {
  local out="$dir/$3"
  [ -x "$out" ] && return 0
  mkdir -p "$dir"
  echo "building $3 from $2 (cached in $dir)" >&2
  (cd "$here/$1" && go build -trimpath -ldflags=-s -o "$out.tmp.$$" "$2")
  mv -f "$out.tmp.$$" "$out"
}

# apt_download <dir> <package>...: apt-get download into dir, appending to
# dir/download.log. Package lists a machine image was built with go stale
# as the mirror replaces superseded versions; as root (CI is), refresh them
# once and try again.
apt_download() {
  local dir=$1
  shift
  (cd "$dir" && apt-get download -q "$@" >>download.log 2>&1) && return 0
  [ "$(id -u)" = 0 ] || return 1
  echo "apt-get download failed; refreshing the package lists (apt-get update) and trying again" >&2
  apt-get update -q >>"$dir/download.log" 2>&1 || return 1
  (cd "$dir" && apt-get download -q "$@" >>download.log 2>&1)
}

# promtool: unpack it from Debian's package, which apt-get downloads without
# installing anything, so no root and no other package is needed.
fetch_promtool() {
  [ -x "$promtool" ] && return 0
  local tmp
  tmp=$(mktemp -d)
  echo "fetching promtool from Debian's prometheus $PROMETHEUS_DEB_VERSION (cached in $(dirname "$promtool"))" >&2
  if ! (apt_download "$tmp" "prometheus=$PROMETHEUS_DEB_VERSION" && dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"); then
    cat "$tmp/download.log" >&2
    echo "build.sh: could not download Debian's prometheus $PROMETHEUS_DEB_VERSION; if apt has no such version, run apt-get update" >&2
    exit 1
  fi
  mkdir -p "$(dirname "$promtool")"
  mv -f "$tmp/x/usr/bin/promtool" "$promtool"
  rm -rf "$tmp"
}

# python-client: Debian's python3-kubernetes, and the Python packages it
# needs that are not installed here, unpacked like promtool (no root, no pip,
# nothing installed) into a directory for PYTHONPATH. It is for Debian's own
# /usr/bin/python3, whose dist-packages provide the rest.
fetch_python_client() {
  [ -f "$pythonpath/.complete" ] && return 0
  local tmp pkg pkgs=("python3-kubernetes=$PYTHON_KUBERNETES_DEB_VERSION")
  tmp=$(mktemp -d)
  echo "fetching Debian's python3-kubernetes $PYTHON_KUBERNETES_DEB_VERSION and its missing dependencies (cached in $pythonpath)" >&2
  if ! apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances \
      "python3-kubernetes=$PYTHON_KUBERNETES_DEB_VERSION" >"$tmp/depends" 2>"$tmp/download.log"; then
    cat "$tmp/download.log" >&2
    rm -rf "$tmp"
    echo "build.sh: apt knows no python3-kubernetes $PYTHON_KUBERNETES_DEB_VERSION; run apt-get update" >&2
    exit 1
  fi
  for pkg in $(grep '^python3-' "$tmp/depends" | sort -u); do
    [ "$pkg" = python3-kubernetes ] && continue
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q ' installed$' || pkgs+=("$pkg")
  done
  if ! apt_download "$tmp" "${pkgs[@]}"; then
    cat "$tmp/download.log" >&2
    rm -rf "$tmp"
    echo "build.sh: could not download ${pkgs[*]}; if apt has no such version, run apt-get update" >&2
    exit 1
  fi
  for pkg in "$tmp"/*.deb; do dpkg-deb -x "$pkg" "$tmp/x"; done
  # What was unpacked, for whoever wonders which versions a machine got.
  (cd "$tmp" && ls -1 *.deb) >"$tmp/x/usr/lib/python3/dist-packages/.packages"
  mkdir -p "$(dirname "$pythonpath")"
  rm -rf "$pythonpath"
  mv "$tmp/x/usr/lib/python3/dist-packages" "$pythonpath"
  touch "$pythonpath/.complete"
  rm -rf "$tmp"
}

for what in "$@"; do
  case "$what" in
    --dir) echo "$dir" ;;
    --promtool) echo "$promtool" ;;
    --pythonpath) echo "$pythonpath" ;;
    promtool) fetch_promtool ;;
    python-client) fetch_python_client ;;
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
    *) echo "build.sh: unknown target $what (want envtest, cluster, promtool, python-client, --dir, --promtool or --pythonpath)" >&2; exit 2 ;;
  esac
done
