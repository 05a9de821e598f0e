#!/usr/bin/env bash
# ./run image: the container image mlapi-vision:VERSION, built from scratch (no registry):
# a Debian minbase root filesystem made by debootstrap from Debian's packages, plus the
# one-folder binary (dist/mlapi, with the default models inside) that `./run build` makes.
# Writes dist/mlapi-vision-VERSION.tar, which `docker load` and `podman load` both take.
# Needs root (debootstrap), debootstrap, podman and runc (Debian's packages; installed when
# missing).
#   --device openvino: mlapi-vision:VERSION-openvino (dist/mlapi-vision-VERSION-openvino.tar)
#   from the OpenVINO variant's binary (MLAPI_EXTRAS=openvino ./run build: dist/openvino/mlapi)
#   with Intel's OpenCL runtime for its GPU plugin (Debian's intel-opencl-icd), MLAPI_DEVICE=auto.
set -euo pipefail
cd "$(dirname "$0")/.."

variant=""
while [ $# -gt 0 ]; do
    case "$1" in
        --device) variant=${2:-}; shift 2 || shift ;;
        --device=*) variant=${1#--device=}; shift ;;
        *) echo "usage: ./run image [--device openvino]" >&2; exit 2 ;;
    esac
done
case "$variant" in
    ""|cpu) variant=""; dist=dist/mlapi; extra_packages=""; device=cpu ;;
    openvino) dist=dist/openvino/mlapi; extra_packages=",intel-opencl-icd"; device=auto ;;
    cuda) echo "./run image: no CUDA image is built here; docs/accelerators.md says what one needs" >&2
          exit 2 ;;
    *) echo "./run image: --device is openvino (or nothing: the CPU), not '$variant'" >&2; exit 2 ;;
esac
suffix=${variant:+-$variant}
suite=bookworm
mirror=${MLAPI_DEBIAN_MIRROR:-http://deb.debian.org/debian}
work=build/image
# File dates and the image's creation time: the last commit's, so two builds of one commit
# differ only where Debian's packages did.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}

for tool in debootstrap podman runc; do  # runc: the runtime image_smoke runs it with
    command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || {
        apt-get install -y -qq "$tool" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$tool"; }
    }
done
[ -x "$dist/mlapi" ] || {
    echo "./run image: building the binary first" >&2
    MLAPI_EXTRAS=$variant ./run build
}
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' mlapi/__init__.py)
tag="mlapi-vision:$version$suffix"

started=$SECONDS
mkdir -p "$work"
base="$work/debian-$suite-minbase$suffix"
if [ ! -f "$base/.complete" ]; then  # the Debian part is kept between builds
    rm -rf "$base"
    echo "./run image: debootstrap $suite (minbase, ca-certificates, tzdata$extra_packages)" >&2
    /usr/sbin/debootstrap --variant=minbase --include="ca-certificates,tzdata$extra_packages" \
        "$suite" "$base" "$mirror" >"$work/debootstrap.log"
    # What the binary does not need at run time: package caches and lists, docs, locales.
    rm -rf "$base"/var/cache/apt/* "$base"/var/lib/apt/lists/* "$base"/var/log/* \
        "$base"/usr/share/doc/* "$base"/usr/share/man/* "$base"/usr/share/info/* \
        "$base"/usr/share/locale/*
    touch "$base/.complete"
fi

rootfs="$work/rootfs"
rm -rf "$rootfs"
cp -a "$base" "$rootfs"
rm -f "$rootfs/.complete"
# A non-root user that owns the three volumes.
echo "mlapi:x:10001:10001:mlapi:/data:/usr/sbin/nologin" >>"$rootfs/etc/passwd"
echo "mlapi:x:10001:" >>"$rootfs/etc/group"
echo "mlapi:*:19000:0:99999:7:::" >>"$rootfs/etc/shadow"
mkdir -p "$rootfs/opt" "$rootfs/data" "$rootfs/config" "$rootfs/cache"
cp -a "$dist" "$rootfs/opt/mlapi"
ln -sf /opt/mlapi/mlapi "$rootfs/usr/local/bin/mlapi"
chown 10001:10001 "$rootfs/data" "$rootfs/config" "$rootfs/cache"

tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --numeric-owner --xattrs \
    -C "$rootfs" -cf "$work/rootfs.tar" .
cat >"$work/Containerfile" <<CONTAINERFILE
FROM scratch
ADD rootfs.tar /
ENV MLAPI_HOST=0.0.0.0 MLAPI_PORT=5000 \\
    MLAPI_DATA_DIR=/data MLAPI_CONFIG_DIR=/config MLAPI_CACHE_DIR=/cache \\
    MLAPI_DEVICE=$device HOME=/data LANG=C.UTF-8 TZ=UTC
USER 10001:10001
WORKDIR /data
VOLUME ["/data", "/config", "/cache"]
EXPOSE 5000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s CMD ["mlapi", "health"]
STOPSIGNAL SIGTERM
LABEL org.opencontainers.image.title="mlapi-vision" \\
      org.opencontainers.image.version="$version" \\
      org.opencontainers.image.description="Self-hosted computer-vision API (objects, faces, embeddings)"
CMD ["mlapi", "serve"]
CONTAINERFILE
podman build --quiet --format docker --timestamp "$SOURCE_DATE_EPOCH" -t "$tag" \
    -f "$work/Containerfile" "$work" >/dev/null
archive="dist/mlapi-vision-$version$suffix.tar"
rm -f "$archive"
podman save --quiet --format docker-archive -o "$archive" "$tag"
rm -rf "$rootfs" "$work/rootfs.tar"
echo "./run image: $tag and $archive ($(du -h "$archive" | cut -f1)) in $((SECONDS - started)) s" >&2
