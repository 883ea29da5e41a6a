#!/usr/bin/env bash
# mmdebstrap customize hook of image/build.sh: ROOTFS WHEELS UID.
# Installs soc-agent from the wheels (offline, no pip left behind) into the venv
# /opt/soc-agent, adds the unprivileged user, the data directory it may write, and
# strips what a non-root, read-only container never needs (setuid bits, build logs).
set -euo pipefail

root=${1:?rootfs}
wheels=${2:?wheel directory}
uid=${3:?uid}
venv=/opt/soc-agent
site="$venv/lib/python3.11/site-packages"

# A clean environment inside the chroot: no host pip settings, caches or paths.
in_root() {
  chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/nonexistent \
    LANG=C.UTF-8 "$@"
}

mkdir "$root/tmp/wheels"
cp "$wheels"/*.whl "$root/tmp/wheels/"
pip_wheel=$(cd "$root/tmp/wheels" && ls pip-*.whl)

# The venv gets no pip of its own: pip runs from its wheel for this one install.
in_root /usr/bin/python3 -m venv --without-pip "$venv"
in_root "$venv/bin/python" "/tmp/wheels/$pip_wheel/pip" install --quiet --no-index \
  --find-links /tmp/wheels --only-binary=:all: --no-cache-dir --no-compile \
  --disable-pip-version-check --no-warn-script-location soc-agent
in_root "$venv/bin/python" "/tmp/wheels/$pip_wheel/pip" freeze --path "$site" \
  --disable-pip-version-check >"$root$venv/requirements.lock"
rm -rf "$root/tmp/wheels"

# Byte-code compiled now, since the root filesystem is read-only at run time. The
# hashes are not checked against the sources (they never change in the image), so
# the mtimes that SOURCE_DATE_EPOCH clamps cannot make the cache stale. A few
# packages ship files that are not Python 3 (templates, fixtures): they stay as they are.
in_root "$venv/bin/python" -m compileall -q --invalidation-mode unchecked-hash "$site" \
  >/dev/null || echo "customize-rootfs.sh: some files did not compile (left as source)" >&2

# The user the chart runs as (runAsUser/runAsGroup/fsGroup), without a password or shell.
echo "soc-agent:x:$uid:$uid:soc-agent:/var/lib/soc-agent:/usr/sbin/nologin" >>"$root/etc/passwd"
echo "soc-agent:x:$uid:" >>"$root/etc/group"
echo "soc-agent:!*:::::::" >>"$root/etc/shadow"
echo "soc-agent:!::" >>"$root/etc/gshadow"
install -d -m 0750 -o "$uid" -g "$uid" "$root/var/lib/soc-agent"

# No setuid or setgid programs: nothing in the container may gain privileges.
find "$root/usr" "$root/etc" "$root/var" "$root/opt" -xdev -type f -perm /6000 \
  -exec chmod ug-s {} +

# Build leftovers: logs and caches, and the build host's resolver and host name, which
# mmdebstrap copied in (the runtime mounts its own over these files). apt's directories
# go when build.sh packs the layer: mmdebstrap still uses them after this hook.
rm -rf "$root/var/log/apt" "$root/var/cache/ldconfig/aux-cache" \
  "$root/var/cache/debconf/"*-old "$root/root/.cache"
rm -f "$root/var/log/dpkg.log" "$root/var/log/alternatives.log"
: >"$root/etc/resolv.conf"
: >"$root/etc/hostname"
chmod 0644 "$root/etc/resolv.conf" "$root/etc/hostname"
