#!/usr/bin/env bash
# Can `make e2e` run on this machine? Exit 0 if so. Otherwise exit 1 with one
# line on stdout saying why not: not root, podman or runc could not be
# installed, or podman cannot start even a container of one static binary
# (no namespaces, no cgroups, a runtime that refuses the machine). .ci/run
# prints that line and goes on without the e2e.
set -uo pipefail
cd "$(dirname "$0")/.."
export CONTAINERS_CONF=$PWD/e2e/containers.conf
export PATH="$PATH:/usr/sbin:/sbin"

if [ "$(id -u)" -ne 0 ]; then
    echo "it needs root (podman rootful, debootstrap, chroot) and this is uid $(id -u)"
    exit 1
fi
if ! setup=$(bash e2e/host-setup.sh 2>&1); then
    echo "installing podman, runc, tini, catatonit, debootstrap from Debian's packages failed: $(tail -n1 <<<"$setup")"
    exit 1
fi

# A probe image of one static binary, tini-static, which prints its version.
probe=localhost/nucleus-e2e-probe:latest
if ! podman image exists "$probe" 2>/dev/null; then
    dir=$(mktemp -d)
    cp /usr/bin/tini-static "$dir/tini"
    if ! out=$(tar -C "$dir" -c . | podman import -q - "$probe" 2>&1); then
        rm -rf "$dir"
        echo "podman cannot import an image here: $(tail -n1 <<<"$out")"
        exit 1
    fi
    rm -rf "$dir"
fi
if ! out=$(timeout 60 podman run --rm --entrypoint /tini "$probe" --version 2>&1 | tr -d '\0'); then
    echo "podman cannot run a container here: $(tail -n1 <<<"$out")"
    exit 1
fi
exit 0
