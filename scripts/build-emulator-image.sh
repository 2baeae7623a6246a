#!/usr/bin/env bash
# Builds the pinned moto emulator image locally, with no container registry.
#
# The test harness asks Docker for `motoserver/moto:$MOTO_VERSION`. Where a registry can be reached,
# Docker pulls the official image and this script is not needed. On an air-gapped machine, this script
# builds an image under the same name from Debian's packages and PyPI's `moto[server]`:
#   1. debootstrap a minimal Debian bookworm root filesystem (from the host's apt mirror),
#   2. install python3 + venv inside it, then `pip install moto[server]==$MOTO_VERSION` into /opt/moto,
#   3. `docker import` the tree with the same entrypoint and port as the official image.
# Usage: scripts/build-emulator-image.sh            (skips the build when the image is present)
#        FORCE=1 scripts/build-emulator-image.sh    (rebuilds)
set -euo pipefail

MOTO_VERSION="${MOTO_VERSION:-5.2.5}"
IMAGE="motoserver/moto:${MOTO_VERSION}"

if [ -z "${FORCE:-}" ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "build-emulator-image: $IMAGE is present"
  exit 0
fi

command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap; }

MIRROR="${DEBIAN_MIRROR:-$(grep -h '^URIs:' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1 | awk '{print $2}')}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"

WORK="$(mktemp -d /tmp/moto-rootfs.XXXXXX)"
ROOTFS="$WORK/rootfs"
cleanup() {
  for m in proc sys dev; do umount -l "$ROOTFS/$m" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "build-emulator-image: debootstrap bookworm from $MIRROR"
debootstrap --variant=minbase bookworm "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
  || { tail -30 "$WORK/debootstrap.log"; exit 1; }

# The host's CA bundle and pip configuration, so pip inside the rootfs reaches the same index.
cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt" 2>/dev/null \
  || { mkdir -p "$ROOTFS/etc/ssl/certs"; cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/"; }
[ -f /etc/pip.conf ] && cp /etc/pip.conf "$ROOTFS/etc/pip.conf"
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"

mount -t proc proc "$ROOTFS/proc"
mount --rbind /sys "$ROOTFS/sys"
mount --rbind /dev "$ROOTFS/dev"

echo "build-emulator-image: python3 and moto[server]==$MOTO_VERSION"
chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
  bash -c 'apt-get install -y -qq python3 python3-venv ca-certificates >/dev/null'
cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/host-ca.crt"
chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  PIP_CERT=/etc/ssl/certs/host-ca.crt PIP_DEFAULT_TIMEOUT=180 PIP_DISABLE_PIP_VERSION_CHECK=1 \
  bash -c "python3 -m venv /opt/moto && /opt/moto/bin/pip install -q 'moto[server]==$MOTO_VERSION'"
chroot "$ROOTFS" bash -c 'apt-get clean; rm -rf /var/lib/apt/lists/* /root/.cache'

for m in proc sys dev; do umount -l "$ROOTFS/$m" 2>/dev/null || true; done
ln -sf /opt/moto/bin/moto_server "$ROOTFS/usr/local/bin/moto_server"

echo "build-emulator-image: docker import $IMAGE"
tar -C "$ROOTFS" -c . | docker import \
  --change 'ENTRYPOINT ["/usr/local/bin/moto_server", "-H", "0.0.0.0"]' \
  --change 'EXPOSE 5000' \
  --change 'ENV PATH=/opt/moto/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  - "$IMAGE" >/dev/null
echo "build-emulator-image: built $IMAGE"
