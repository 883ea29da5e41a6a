#!/usr/bin/env bash
# Builds the OCI image that the Helm chart deploys, from Debian packages and the
# project's wheel, pulling nothing from a container registry:
#   1. the soc-agent wheel (pip wheel) and its runtime dependencies' wheels (PyPI),
#      resolved for the image's Python (Debian bookworm: CPython 3.11, glibc 2.36);
#   2. a minimal bookworm rootfs (mmdebstrap: python3, ca-certificates) into which
#      image/customize-rootfs.sh installs those wheels offline into /opt/soc-agent;
#   3. umoci turns the rootfs tarball into an OCI image layout, tagged with the chart's
#      appVersion, and sets its config (non-root user, entrypoint, env, volumes, labels).
# Output: OUT/oci (OCI image layout), OUT/soc-agent-TAG.oci.tar (oci-archive of it),
# OUT/requirements.lock (the exact Python packages in the image).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
CHART="$ROOT/helm/soc-agent/Chart.yaml"

SUITE=bookworm
PY_VERSION=3.11 # bookworm's python3
APP_UID=10001   # = the chart's podSecurityContext runAsUser/runAsGroup/fsGroup
REPOSITORY=ghcr.io/soc-agent/soc-agent # = the chart's image.repository
MIRROR=${SOC_AGENT_IMAGE_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SOC_AGENT_IMAGE_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

usage() {
  cat <<EOF
usage: image/build.sh [--out DIR] [--tag TAG] [--load] | --tools

  --out DIR   where the image goes (default: build/image in the project)
  --tag TAG   image tag (default: appVersion of helm/soc-agent/Chart.yaml)
  --load      also load it into podman as $REPOSITORY:TAG
  --tools     only make sure the tools are here (mmdebstrap, umoci, and podman with
              runc to run the image): as root with apt-get they are installed when
              missing; then exit

Environment: PYTHON (the Python that builds the wheel: default .venv/bin/python, else
python3), SOURCE_DATE_EPOCH (default: the last commit's time),
SOC_AGENT_IMAGE_MIRROR / SOC_AGENT_IMAGE_SECURITY_MIRROR (Debian mirrors).
EOF
}

die() {
  echo "image/build.sh: $*" >&2
  exit 1
}

# Installs the Debian packages named "command:package" whose command is missing, when
# we may (root with apt-get); otherwise fails saying what to install.
ensure_tools() {
  local missing=() spec
  for spec in "$@"; do
    command -v "${spec%%:*}" >/dev/null 2>&1 || missing+=("${spec#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "image/build.sh: installing ${missing[*]} (apt-get)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
  else
    die "missing tools: ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root on Debian"
  fi
}

OUT="$ROOT/build/image"
TAG=""
LOAD=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=${2:?--out needs a directory}; shift 2 ;;
    --tag) TAG=${2:?--tag needs a value}; shift 2 ;;
    --load) LOAD=1; shift ;;
    --tools)
      ensure_tools mmdebstrap:mmdebstrap umoci:umoci podman:podman runc:runc
      exit 0
      ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

if [ -z "$TAG" ]; then
  TAG=$(sed -n 's/^appVersion:[[:space:]]*"\{0,1\}\([^"]*\)"\{0,1\}[[:space:]]*$/\1/p' "$CHART")
  [ -n "$TAG" ] || die "no appVersion in $CHART; pass --tag"
fi

ensure_tools mmdebstrap:mmdebstrap umoci:umoci
[ "$LOAD" = 1 ] && ensure_tools podman:podman
if [ "$(id -u)" != 0 ]; then
  # mmdebstrap's unshare mode maps subordinate ids for the rootfs's owners.
  ensure_tools newuidmap:uidmap
fi

if [ -z "${PYTHON:-}" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
  [ "$PYTHON" = python3 ] && ensure_tools pip3:python3-pip
  "$PYTHON" -m pip --version >/dev/null 2>&1 || die "$PYTHON has no pip: set PYTHON to one that does"
fi

case "$(dpkg --print-architecture 2>/dev/null || uname -m)" in
  amd64 | x86_64) ARCH=amd64 PY_ARCH=x86_64 ;;
  arm64 | aarch64) ARCH=arm64 PY_ARCH=aarch64 ;;
  *) die "unsupported architecture $(uname -m) (amd64 and arm64 are)" ;;
esac

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
  SOURCE_DATE_EPOCH=$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH
CREATED=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
REVISION=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/soc-agent-image.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
started=$SECONDS

# 1. Wheels. Only binary wheels for the image's interpreter and glibc: nothing is
# compiled, and the install in the rootfs is offline (--no-index).
echo "image/build.sh: wheels (soc-agent and its runtime dependencies)" >&2
if ! "$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$WORK/wheels" "$ROOT" \
  >"$WORK/wheel.log" 2>&1; then
  cat "$WORK/wheel.log" >&2
  die "pip wheel $ROOT failed"
fi
wheel=$(find "$WORK/wheels" -name 'soc_agent-*.whl' -print -quit)
[ -n "$wheel" ] || die "pip wheel produced no soc_agent wheel"
platforms=()
for minor in $(seq 36 -1 17); do platforms+=(--platform "manylinux_2_${minor}_${PY_ARCH}"); done
platforms+=(--platform "manylinux2014_${PY_ARCH}")
"$PYTHON" -m pip download --quiet --dest "$WORK/wheels" --only-binary=:all: \
  --implementation cp --python-version "$PY_VERSION" --abi "cp${PY_VERSION/./}" \
  "${platforms[@]}" "$wheel" pip

# 2. The rootfs: Debian packages only, the smallest set: the Essential ones (dpkg, libc,
# coreutils, ...), python3 and ca-certificates; no apt (mmdebstrap's "essential"
# variant; "minbase" would add the priority-required packages). /usr is merged by
# directory symlinks as debootstrap does, not by the usrmerge package, which would pull
# in all of Perl. Documentation, man
# pages and translations are left out (copyright files stay); the customize hook adds
# the venv and the user.
echo "image/build.sh: rootfs (mmdebstrap $SUITE, essential + python3)" >&2
if ! mmdebstrap --quiet --variant=essential --architectures="$ARCH" \
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
  --include=python3,ca-certificates \
  --aptopt='APT::Install-Recommends "false"' \
  --dpkgopt='path-exclude=/usr/share/doc/*' \
  --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/info/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*' \
  --dpkgopt='path-exclude=/usr/share/lintian/*' \
  --customize-hook="\"$HERE/customize-rootfs.sh\" \"\$1\" \"$WORK/wheels\" $APP_UID" \
  --customize-hook="copy-out /opt/soc-agent/requirements.lock \"$WORK\"" \
  "$SUITE" "$WORK/rootfs.tar" \
  "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" \
  "deb $SECURITY_MIRROR $SUITE-security main" </dev/null >"$WORK/mmdebstrap.log" 2>&1; then
  tail -n 60 "$WORK/mmdebstrap.log" >&2
  die "mmdebstrap failed (above: the end of its log)"
fi
# Device nodes are the runtime's to provide (it mounts /dev; the layer keeps the
# directory), and apt's directories are left over from the build (apt is not installed).
tar --delete --wildcards --file "$WORK/rootfs.tar" './dev/?*' ./etc/apt ./var/lib/apt ./var/cache/apt

# 3. The OCI image.
echo "image/build.sh: OCI layout (umoci)" >&2
mkdir -p "$OUT"
LAYOUT="$OUT/oci"
rm -rf "$LAYOUT"
IMAGE="$LAYOUT:$TAG"
history=(--history.created "$CREATED" --history.created_by "image/build.sh")
umoci init --layout "$LAYOUT"
umoci new --image "$IMAGE"
umoci raw add-layer --image "$IMAGE" "${history[@]}" \
  --history.comment "debian $SUITE (mmdebstrap essential, python3, ca-certificates), soc-agent in /opt/soc-agent" \
  "$WORK/rootfs.tar"
labels=(
  org.opencontainers.image.title=soc-agent
  "org.opencontainers.image.description=Event-driven security operations agent"
  "org.opencontainers.image.version=$TAG"
  "org.opencontainers.image.revision=$REVISION"
  "org.opencontainers.image.created=$CREATED"
  org.opencontainers.image.licenses=Apache-2.0
)
config=(
  --os linux --architecture "$ARCH" --created "$CREATED"
  --config.user "$APP_UID:$APP_UID"
  --config.entrypoint /opt/soc-agent/bin/soc-agent --config.cmd run
  --config.workingdir /var/lib/soc-agent
  # Everything the process writes: the store and the files beside it (audit key,
  # containment journal, notifier outbox) under /var/lib/soc-agent; temporary
  # directories (stream tables, replays) under /tmp. The rest may be read-only.
  --config.volume /var/lib/soc-agent --config.volume /tmp
  --config.env "PATH=/opt/soc-agent/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
  --config.env HOME=/var/lib/soc-agent
  --config.env LANG=C.UTF-8
  --config.env PYTHONDONTWRITEBYTECODE=1
  --config.env PYTHONUNBUFFERED=1
  --config.env SOC_AGENT_STORE=/var/lib/soc-agent/soc-agent.db
)
for label in "${labels[@]}"; do
  config+=(--config.label "$label" --manifest.annotation "$label")
done
umoci config --image "$IMAGE" "${history[@]}" "${config[@]}"
umoci gc --layout "$LAYOUT"
cp "$WORK/requirements.lock" "$OUT/requirements.lock"

# An oci-archive is the layout as one tarball (podman load, skopeo oci-archive:). Its
# reference is the chart's full image name, which `podman load` then gives the image
# (umoci's own layout may only hold the bare tag).
ARCHIVE="$OUT/soc-agent-$TAG.oci.tar"
cp -al "$LAYOUT" "$WORK/archive"
sed "s|\"org.opencontainers.image.ref.name\":\"$TAG\"|\"org.opencontainers.image.ref.name\":\"$REPOSITORY:$TAG\"|" \
  "$LAYOUT/index.json" >"$WORK/index.json"
mv "$WORK/index.json" "$WORK/archive/index.json"
tar -C "$WORK/archive" --sort=name --owner=0 --group=0 --numeric-owner \
  --mtime="@$SOURCE_DATE_EPOCH" -cf "$ARCHIVE" .

if [ "$LOAD" = 1 ]; then
  podman load --quiet --input "$ARCHIVE" >/dev/null
  echo "image/build.sh: loaded into podman as $REPOSITORY:$TAG" >&2
fi

size=$(du -sb "$LAYOUT/blobs" | cut -f1)
echo "image/build.sh: $IMAGE ($((size / 1024 / 1024)) MiB compressed) and $ARCHIVE in $((SECONDS - started)) s" >&2
