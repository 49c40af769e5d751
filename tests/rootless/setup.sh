#!/bin/bash
# Set up what the rootless tests need, as root, the way an administrator
# would for a rootless podman user: an unprivileged user with subordinate
# ids, podman/buildah/runc/uidmap, and busybox root file systems for two
# foreign arches (arm64, and s390x, big-endian) from Debian's own packages.
# Idempotent; the tests themselves run as that user only.
set -euo pipefail
user=${QUS_ROOTLESS_USER:-qustest}
cache=/var/cache/qus-rootless
export DEBIAN_FRONTEND=noninteractive

need=(podman buildah runc uidmap)
dpkg -s "${need[@]}" >/dev/null 2>&1 || { apt-get update -qq; apt-get install -y -qq "${need[@]}"; }

if ! id "$user" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/bash "$user"
fi
uid=$(id -u "$user")
grep -q "^$user:" /etc/subuid || echo "$user:200000:65536" >> /etc/subuid
grep -q "^$user:" /etc/subgid || echo "$user:200000:65536" >> /etc/subgid
# What logind does at login: a private runtime directory.
install -d -m 0700 -o "$user" -g "$user" "/run/user/$uid"

# Foreign busybox root file systems from the package registry.
mkdir -p "$cache"
for arch in arm64 s390x; do
    [ -x "$cache/rootfs-$arch/bin/busybox" ] && continue
    dpkg --print-foreign-architectures | grep -qx "$arch" || { dpkg --add-architecture "$arch"; apt-get update -qq; }
    tmp=$(mktemp -d); chmod 0755 "$tmp"
    (cd "$tmp" && apt-get download -q "busybox-static:$arch" >/dev/null)
    rm -rf "$cache/rootfs-$arch.new"
    dpkg-deb -x "$tmp"/busybox-static_*.deb "$cache/rootfs-$arch.new"
    rm -rf "$tmp"
    (cd "$cache/rootfs-$arch.new/bin" && for applet in sh uname cat echo ls id true; do ln -sf busybox "$applet"; done)
    mkdir -p "$cache/rootfs-$arch.new/"{proc,sys,dev,tmp,etc}
    rm -rf "$cache/rootfs-$arch"
    mv "$cache/rootfs-$arch.new" "$cache/rootfs-$arch"
done
for arch in arm64 s390x; do
    tar -C "$cache/rootfs-$arch" -cf "$cache/rootfs-$arch.tar" .
done
chmod -R a+rX "$cache"

# Podman for this user: runc and cgroupfs work on every cgroup layout
# (crun refuses hybrid ones), and a file events backend needs no journal.
home=$(getent passwd "$user" | cut -d: -f6)
install -d -o "$user" -g "$user" "$home/.config" "$home/.config/containers"
cat > "$home/.config/containers/containers.conf" <<'CONF'
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
[containers]
netns = "none"
CONF
chown "$user:" "$home/.config/containers/containers.conf"
echo "rootless setup: user $user (uid $uid), rootfs in $cache"
