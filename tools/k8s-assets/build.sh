#!/usr/bin/env bash
# Builds the control-plane binaries the k8s module's envtest tests start
# (etcd, kube-apiserver) and kubectl, from the Go module proxy, into a cache
# directory keyed by the pinned versions, the Go version and go.sum, so a warm
# run does nothing. Prints the directory; point KUBEBUILDER_ASSETS at it.
#
# Cold: about 5 minutes and 2.4 GB peak memory on 2 cores (kube-apiserver is
# most of it). The binaries are static (CGO_ENABLED=0).
#
# build.sh helm builds helm (HELM_VERSION, its own module) into the same
# cache instead and prints the binary's path.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
K8S_VERSION=v1.37.2
ETCD_VERSION=v3.7.0
if [ -z "${RAFTELECT_CI_CACHE:-}" ]; then
  if mkdir -p /var/cache/raftelect-ci 2>/dev/null && [ -w /var/cache/raftelect-ci ]; then
    RAFTELECT_CI_CACHE=/var/cache/raftelect-ci
  else
    RAFTELECT_CI_CACHE="$(go env GOCACHE)/../raftelect-ci"
  fi
fi
HELM_VERSION=v3.22.0
if [ "${1:-}" = helm ]; then
  dir="$RAFTELECT_CI_CACHE/helm-$HELM_VERSION-$(go env GOVERSION)"
  if [ ! -x "$dir/helm" ]; then
    t0=$SECONDS
    GOBIN="$dir.tmp" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
    echo "built helm $HELM_VERSION in $(( SECONDS - t0 )) s" >&2
  fi
  echo "$dir/helm"
  exit 0
fi
key="$(printf '%s\n' "$K8S_VERSION" "$ETCD_VERSION" "$(go env GOVERSION)" "$(sha256sum go.mod go.sum)" | sha256sum | cut -c1-12)"
out="$RAFTELECT_CI_CACHE/k8s-assets-$K8S_VERSION-$ETCD_VERSION-$key"
if [ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ] && [ -x "$out/kubectl" ]; then
  echo "$out"
  exit 0
fi
mkdir -p "$out.tmp"
major="${K8S_VERSION#v}"; major="${major%%.*}"
minor="${K8S_VERSION#v*.}"; minor="${minor%%.*}"
# Without these the API server reports v0.0.0 and clients refuse or warn.
ver=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ver="$ver -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor"
done
export CGO_ENABLED=0
build() { # name package [ldflags]
  local t0=$SECONDS
  go build -trimpath -ldflags "-s -w ${3:-}" -o "$out.tmp/$1" "$2"
  echo "built $1 in $(( SECONDS - t0 )) s ($(du -m "$out.tmp/$1" | cut -f1) MB)" >&2
}
# One at a time: the machine is shared and kube-apiserver alone peaks at 2.4 GB.
[ -x "$out.tmp/etcd" ] || build etcd go.etcd.io/etcd/server/v3 \
  "-X go.etcd.io/etcd/api/v3/version.GitSHA=$ETCD_VERSION"
[ -x "$out.tmp/kube-apiserver" ] || build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$ver"
[ -x "$out.tmp/kubectl" ] || build kubectl k8s.io/kubernetes/cmd/kubectl "$ver"
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out"
