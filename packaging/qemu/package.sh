#!/bin/bash
# A QEMU channel as a package of its own: qus-qemuCHANNEL (.deb and .rpm)
# for one host arch, so any host gets a current QEMU through its package
# manager, beside (never instead of) the distribution's.
#
#   packaging/qemu/package.sh CHANNEL DEBIAN-ARCH OUTDIR
#
# The package holds
#   /usr/lib/qus/qemu/CHANNEL/qemu-*        the channel's static emulators, as
#                                           Debian built them (channel.sh: the
#                                           signed index's SHA256 checked)
#   /usr/lib/qus.d/40-qemu-CHANNEL.toml     appends that directory to
#                                           [qemu] search_path
#   /usr/share/doc/qus-qemuCHANNEL/         QEMU's copyright file (GPL-2.0 and
#                                           others) naming the Debian source
#                                           package and version it came from
# qus registers, per arch, the newest QEMU it finds in search_path (see
# qus.d(5)): installing the package switches every entry to it, live under
# qusd; removing it brings back the distribution's; with two channel
# packages installed the newer QEMU wins, arch by arch. The drop-ins
# append, so none masks another or the administrator's.
#
# Version: the Debian version without its epoch, +qusN for our packaging
# (qus-qemu11 11.1.3+ds-2~bpo13+1+qus1); the RPM's is split the same way
# at the last hyphen (Version 11.1.3+ds, Release 2~bpo13+1.qus1).
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/../.."
die() { echo "package.sh: $*" >&2; exit 1; }
[ $# -eq 3 ] || die "usage: package.sh CHANNEL DEBIAN-ARCH OUTDIR"
channel=$1 arch=$2 out=$3
[ -d "$out" ] || die "$out is not a directory"
for tool in dpkg-deb rpmbuild; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install dpkg-dev rpm)"
done
# Our packaging's revision: raise it when this script changes what the
# package holds.
qus_rev=1
maintainer=$(sed -n 's/^maintainer = "\(.*\)"/\1/p' Cargo.toml | head -1)

read -r deb_version deb_file < <(packaging/qemu/channel.sh --deb "$channel" "$arch")
[ -n "$deb_file" ] || die "no QEMU $channel package for $arch"
src=$(dpkg-deb -f "$deb_file" Source)
src_name=${src%% *}
src_version=$(echo "$src" | sed -n 's/.*(\(.*\)).*/\1/p')
src_version=${src_version:-$deb_version}
bin_pkg=$(dpkg-deb -f "$deb_file" Package)
plain=${deb_version#*:}
version=$plain+qus$qus_rev
qemu_version=$(echo "$plain" | sed -E 's/^([0-9]+(\.[0-9]+)*).*/\1/')
name=qus-qemu$channel
lib=/usr/lib/qus/qemu/$channel
dropin=/usr/lib/qus.d/40-qemu-$channel.toml

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
x=$work/x root=$work/root
dpkg-deb -x "$deb_file" "$x"
mkdir -p "$root$lib" "$root/usr/lib/qus.d" "$root/usr/share/doc/$name" "$root/usr/share/lintian/overrides"
n=0
for f in "$x"/usr/bin/qemu-*; do
    # Regular files only: alias links (qemu-arm64 -> qemu-aarch64) are
    # not more emulators.
    [ -f "$f" ] && [ ! -L "$f" ] || continue
    install -m 0755 "$f" "$root$lib/"
    n=$((n + 1))
done
[ "$n" -gt 0 ] || die "$deb_file holds no emulators"

cat > "$root$dropin" <<EOF
# $name: QEMU $qemu_version's emulators (Debian $src_name $src_version)
# in $lib. Appended to the search path: where an arch has several
# emulators, qus registers the newest QEMU (qus.d(5)), so this package's
# win over older ones and removing it brings those back.
[qemu]
search_path = ["$lib", {append = true}]
EOF
chmod 0644 "$root$dropin"

# QEMU's licences travel with its binaries; say exactly which source
# they were built from.
{
    echo "This package ($name $version) holds the user-mode emulators of QEMU"
    echo "$qemu_version unchanged, as Debian built them: binary package $bin_pkg"
    echo "$deb_version ($arch), from the Debian source package $src_name $src_version"
    echo "(https://snapshot.debian.org/package/$src_name/$src_version/). Their copyright and"
    echo "licences (GPL-2.0 and others) are those of QEMU, as Debian's copyright"
    echo "file of that package says, which follows. The drop-in"
    echo "$dropin is part of qus (MIT OR Apache-2.0)."
    echo
    cat "$x/usr/share/doc/$bin_pkg/copyright"
} > "$root/usr/share/doc/$name/copyright"
chmod 0644 "$root/usr/share/doc/$name/copyright"
date=$(date -R -u -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}")
{
    echo "$name ($version) unstable; urgency=medium"
    echo
    echo "  * QEMU $qemu_version from Debian $src_name $src_version"
    echo "    ($bin_pkg $deb_version)."
    echo
    echo " -- $maintainer  $date"
} | gzip -9n > "$root/usr/share/doc/$name/changelog.Debian.gz"
chmod 0644 "$root/usr/share/doc/$name/changelog.Debian.gz"
# As Debian's own qemu-user: static-pie emulators look like shared
# libraries to lintian, and they are static on purpose (they run in any
# container or chroot).
{
    echo "# Static position-independent emulators, static on purpose (containers, chroots)."
    echo "$name: shared-library-lacks-prerequisites [${lib#/}/*]"
    echo "# QEMU's own strings."
    echo "$name: spelling-error-in-binary *"
} > "$root/usr/share/lintian/overrides/$name"
chmod 0644 "$root/usr/share/lintian/overrides/$name"

# The .deb (xz, as lintian wants; -1: a tenth of the time of -6 for 10 %
# more bytes, on ~450 MB of emulators).
size=$(du -sk "$root" | cut -f1)
mkdir -p "$root/DEBIAN"
(cd "$root" && find usr -type f -print0 | sort -z | xargs -0 md5sum) > "$root/DEBIAN/md5sums"
cat > "$root/DEBIAN/control" <<EOF
Package: $name
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $size
Section: otherosfs
Priority: optional
Enhances: qus
Homepage: https://www.qemu.org/
Description: QEMU $channel user-mode emulators for qus
 QEMU $qemu_version's static user-mode emulators ($n), as Debian built them
 ($src_name $src_version), in $lib, and a drop-in that
 makes qus register them wherever they are newer than the emulators the
 distribution installed. Installing the package switches qus's entries to
 them at once; removing it switches back.
 .
 Debian 13's arm64 programs, built with pointer authentication, run
 ~15x slower under QEMU 7.2's default CPU than under QEMU 11.
EOF
find "$root" -type d -exec chmod 0755 {} +
deb_out=$out/${name}_${version}_$arch.deb
dpkg-deb --root-owner-group -Zxz -z1 -b "$root" "$deb_out" >/dev/null
rm -rf "$root/DEBIAN"

# The .rpm, from the same tree.
case $arch in
    amd64) rpm_arch=x86_64 ;; arm64) rpm_arch=aarch64 ;; armhf) rpm_arch=armv7hl ;;
    ppc64el) rpm_arch=ppc64le ;; s390x) rpm_arch=s390x ;; i386) rpm_arch=i686 ;;
    *) die "no RPM arch known for $arch" ;;
esac
rpm_version=${version%-*} rpm_release=${version##*-}
rpm_release=${rpm_release//+qus/.qus}
mkdir -p "$work/rpm/SPECS"
{
    cat <<EOF
Name: $name
Version: $rpm_version
Release: $rpm_release
Summary: QEMU $channel user-mode emulators for qus
License: GPL-2.0-only AND GPL-2.0-or-later AND LGPL-2.1-or-later AND MIT AND BSD-3-Clause
URL: https://www.qemu.org/
AutoReqProv: no
Enhances: qus
%global __os_install_post %{nil}
%global debug_package %{nil}
%global _build_id_links none
%description
QEMU $qemu_version's static user-mode emulators ($n), as Debian built them
($src_name $src_version), in $lib, and a drop-in that makes qus register
them wherever they are newer than the emulators the distribution
installed. Installing the package switches qus's entries to them at once;
removing it switches back.
%install
cp -a "$root/." "%{buildroot}/"
rm -rf "%{buildroot}/usr/share/lintian"
%files
%dir /usr/lib/qus
%dir /usr/lib/qus/qemu
$lib
%config(noreplace) $dropin
%doc /usr/share/doc/$name
EOF
} > "$work/rpm/SPECS/$name.spec"
rpmbuild -bb --quiet --target "$rpm_arch-linux" --define "_topdir $work/rpm" \
    --define "_binary_payload w9.zstdio" "$work/rpm/SPECS/$name.spec" >/dev/null 2>"$work/rpm.err" ||
    die "rpmbuild failed: $(tail -5 "$work/rpm.err")"
cp "$work"/rpm/RPMS/*/*.rpm "$out/"
echo "$name $version: QEMU $qemu_version ($src_name $src_version), $n emulators: $(basename "$deb_out") $(basename "$work"/rpm/RPMS/*/*.rpm)"
