#!/usr/bin/env bash
# Installs what the e2e needs on the host, from Debian's packages, where it is
# missing: podman and runc (the runtime: crun refuses this machine kind's
# hybrid cgroup layout), tini and catatonit (the peers it is compared with,
# given to podman as --init-path), debootstrap (the image's root file system).
# Needs root. Prints nothing when everything is there already.
set -euo pipefail

# command -> Debian package
declare -A wanted=(
    [podman]=podman
    [runc]=runc
    [tini-static]=tini
    [catatonit]=catatonit
    [debootstrap]=debootstrap
)
missing=()
for cmd in "${!wanted[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 \
        || missing+=("${wanted[$cmd]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "e2e/host-setup.sh: missing ${missing[*]}, and installing them needs root" >&2
    exit 1
fi
echo "e2e/host-setup.sh: installing ${missing[*]} from Debian's packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Recommends left out: podman's pulls in crun, buildah, slirp4netns and more.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
