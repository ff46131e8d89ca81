#!/usr/bin/env bash
# Builds the e2e control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kwok) from the Go wrapper modules in e2e/tools/ and caches the binaries outside the
# repository, keyed by a hash of the wrapper files, this script and the Go version, so a warm
# run finds them in place and a change to any pin rebuilds. Prints the bin directory.
#
#   e2e/build.sh            build if needed, print the bin dir
#   E2E_CACHE=dir e2e/build.sh
set -euo pipefail

# All in one function, so bash has parsed the whole script before it runs (editing it mid-build is safe).
main() {

  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  tools="$here/tools"
  cache_root="${E2E_CACHE:-$HOME/.cache/gpu-platform/e2e}"

  # The release the kubernetes wrapper pins; the version ldflags below must name the same one so
  # the binaries report it (without them they say v0.0.0-master and the apiserver's emulated
  # version is wrong).
  kube_version="v1.36.3"

  key="$( { cat "$here/build.sh" "$tools"/*/go.mod "$tools"/*/go.sum; go version; } | sha256sum | cut -c1-16)"
  bin="$cache_root/$key/bin"
  if [[ -x "$bin/kwok" && -x "$bin/kube-apiserver" && -x "$bin/etcd" ]]; then
    echo "$bin"
    return 0
  fi

  mkdir -p "$cache_root"
  stage="$(mktemp -d "$cache_root/.stage.XXXXXX")"
  trap 'rm -rf "$stage"' EXIT

  export CGO_ENABLED=0
  # -s -w: no symbol tables, which cuts link time and size; these are test fixtures, not debugged.
  common=(-trimpath)
  minor="${kube_version#v1.}"; minor="${minor%%.*}"
  kube_ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    kube_ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    kube_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done

  start=$SECONDS
  echo "e2e build: etcd" >&2
  (cd "$tools/etcd" && go build "${common[@]}" -ldflags "-s -w" -o "$stage/etcd" go.etcd.io/etcd/server/v3)
  echo "e2e build: kwok" >&2
  (cd "$tools/kwok" && go build "${common[@]}" -ldflags "-s -w" -o "$stage/kwok" sigs.k8s.io/kwok/cmd/kwok)
  # kwok ships its default stages (nodes Ready with heartbeats; pods Running/Ready, completed,
  # deleted) as kustomize data, not built in: collect them into one config file next to it.
  kwok_dir="$(cd "$tools/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)"
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
    pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    cat "$kwok_dir/kustomize/stage/$f"; echo "---"
  done > "$stage/kwok-stages.yaml"
  echo "e2e build: kube-apiserver kube-controller-manager kube-scheduler" >&2
  # One go build for the three, so their shared packages compile once and in parallel. No kubectl:
  # the tests ask SubjectAccessReviews (what `kubectl auth can-i` sends) directly.
  (cd "$tools/kubernetes" && go build "${common[@]}" -ldflags "$kube_ldflags" -o "$stage/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler)
  echo "e2e build: done in $((SECONDS - start)) s" >&2

  mkdir -p "$(dirname "$bin")"
  rm -rf "$bin"
  mv "$stage" "$bin"
  trap - EXIT
  echo "$bin"
}

main "$@"
