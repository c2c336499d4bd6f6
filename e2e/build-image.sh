#!/usr/bin/env bash
# Builds the e2e's container image, localhost/nucleus-e2e, and tags it :latest.
#
#   build/e2e/rootfs   Debian bookworm, debootstrap --variant=minbase, with
#                      python3 and python3-venv (Debian's Python 3.11): built
#                      once, kept across runs
#   /opt/nucleus-trio  in it, a venv made by the image's own python3 (chroot)
#                      with this checkout's wheel and its dependencies from
#                      PyPI (pip wheel on the host, pip install --no-index in
#                      the chroot), so its launcher's #! is the image's venv
#   /opt/e2e           the tests' fixtures: badpath/trio.py (raises when
#                      imported), not-executable (mode 0644)
#
# The image is tagged with a digest of everything that goes into it (this
# script, pyproject.toml, src/, scripts/): when that tag exists already in
# podman's storage, nothing is rebuilt. Needs root (debootstrap, chroot).
#
# Environment: PYTHON (the project's interpreter, default .venv/bin/python),
# E2E_MIRROR (default: the Debian mirror of apt's sources), E2E_IMAGE.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=$ROOT/build/e2e
ROOTFS=$OUT/rootfs
IMAGE=${E2E_IMAGE:-localhost/nucleus-e2e}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
SUITE=bookworm
INCLUDE=python3,python3-venv
export CONTAINERS_CONF=$ROOT/e2e/containers.conf
export PATH="$PATH:/usr/sbin:/sbin"

say() { echo "e2e/build-image.sh: $*"; }

# The digest of the image's inputs. The files are listed from the work tree
# (not git), so a change not yet committed counts too.
inputs_digest() {
    {
        echo "$SUITE $INCLUDE"
        find e2e/build-image.sh pyproject.toml src scripts -type f \
            -not -path '*/__pycache__/*' -not -name '*.pyc' -print0 \
            | LC_ALL=C sort -z | xargs -0 sha256sum
    } | sha256sum | cut -c1-16
}
TAG=$(inputs_digest)

if podman image exists "$IMAGE:$TAG"; then
    podman tag "$IMAGE:$TAG" "$IMAGE:latest"
    say "$IMAGE:$TAG is up to date"
    exit 0
fi

mkdir -p "$OUT"

# 1. The root file system, once.
stamp="$ROOTFS/.e2e-debootstrap"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$SUITE $INCLUDE" ]; then
    mirror=${E2E_MIRROR:-}
    if [ -z "$mirror" ]; then
        # The Debian mirror apt uses (deb822 URIs: or one-line deb entries).
        mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
                     /etc/apt/sources.list.d/*.sources 2>/dev/null \
                 | grep -vE '^[[:space:]]*#' | grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -n1 \
                 | tr -d ' ' || true)
        mirror=${mirror:-http://deb.debian.org/debian}
    fi
    say "debootstrap --variant=minbase $SUITE from $mirror (about a minute)"
    rm -rf "$ROOTFS" "$ROOTFS.tmp"
    debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$ROOTFS.tmp" "$mirror" \
        > "$OUT/debootstrap.log" 2>&1 || {
        tail -n 20 "$OUT/debootstrap.log" >&2
        say "debootstrap failed (whole log: $OUT/debootstrap.log)" >&2
        exit 1
    }
    # What a container never needs: the downloaded packages, apt's lists,
    # documentation and translations.
    rm -rf "$ROOTFS.tmp"/var/cache/apt/archives/*.deb "$ROOTFS.tmp"/var/lib/apt/lists/* \
        "$ROOTFS.tmp"/usr/share/doc/* "$ROOTFS.tmp"/usr/share/man/* \
        "$ROOTFS.tmp"/usr/share/info/* "$ROOTFS.tmp"/usr/share/locale/*
    echo "$SUITE $INCLUDE" > "$ROOTFS.tmp/.e2e-debootstrap"
    mv "$ROOTFS.tmp" "$ROOTFS"
fi

# 2. The wheels: this checkout's, and its dependencies' (pure Python).
say "building the wheels"
rm -rf "$OUT/wheels"
"$PYTHON" -m pip wheel -q --disable-pip-version-check -w "$OUT/wheels" "$ROOT" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" >&2 || true
ls "$OUT"/wheels/nucleus_trio-*.whl >/dev/null

# 3. The venv, made and filled by the image's own Python.
say "installing nucleus-trio into $ROOTFS/opt/nucleus-trio"
rm -rf "$ROOTFS/opt/nucleus-trio" "$ROOTFS/opt/e2e" "$ROOTFS/tmp/wheels"
cp -r "$OUT/wheels" "$ROOTFS/tmp/wheels"
chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root \
    /usr/bin/python3 -m venv /opt/nucleus-trio
chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root PIP_NO_CACHE_DIR=1 \
    /opt/nucleus-trio/bin/python -m pip install -q --disable-pip-version-check \
    --no-index --find-links /tmp/wheels nucleus-trio
rm -rf "$ROOTFS/tmp/wheels"
chroot "$ROOTFS" /opt/nucleus-trio/bin/nucleus-trio --version

# 4. The tests' fixtures.
mkdir -p "$ROOTFS/opt/e2e/badpath"
cat > "$ROOTFS/opt/e2e/badpath/trio.py" <<'EOF'
raise RuntimeError("e2e: this trio.py on PYTHONPATH was imported")
EOF
printf '#!/bin/sh\necho "should not run"\n' > "$ROOTFS/opt/e2e/not-executable"
chmod 0644 "$ROOTFS/opt/e2e/not-executable"

# 5. Into podman's storage; older tags of the image go.
say "importing $IMAGE:$TAG"
tar -C "$ROOTFS" --exclude=./.e2e-debootstrap -c . \
    | podman import -q \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/sh"]' \
        - "$IMAGE:$TAG" >/dev/null
podman tag "$IMAGE:$TAG" "$IMAGE:latest"
for old in $(podman images --format '{{.Repository}}:{{.Tag}}' "$IMAGE"); do
    case "$old" in
        "$IMAGE:$TAG" | "$IMAGE:latest") ;;
        *) podman rmi "$old" >/dev/null 2>&1 || true ;;
    esac
done
say "$IMAGE:$TAG built"
