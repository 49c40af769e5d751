#!/bin/bash
# Build every shipped artefact from the repo and check it, as CI does:
# make install DESTDIR=, .deb (+ lintian), .rpm (+ rpm -qlp), the container
# image (+ run from its own rootfs), the Kubernetes manifests (schemas),
# and the real boot test of the .deb under systemd in systemd-nspawn.
#
# Needs (the CI script installs them): cargo-deb, cargo-generate-rpm,
# lintian, rpm, buildah, debootstrap, systemd-container, bc, binutils,
# kubernetes-validate (PyPI), qemu-user-static, and for the multi-arch
# images the rustup targets and cross compilers for arm64 and s390x.
set -euo pipefail
cd "$(dirname "$0")/../.."
fail=0
step() { echo; echo "== $*"; }
bad() { echo "FAIL $*"; fail=1; }

step "make all + make install DESTDIR"
make all
# Everything temporary, this script's and that of the scripts it runs
# (build contexts, state directories), goes in one directory removed at
# exit: CI runs this over and over on the same machine.
TMPDIR=$(mktemp -d)
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT
stage=$(mktemp -d)
make install DESTDIR="$stage" PREFIX=/usr >/dev/null
expected="/etc/qus.d/50-example.toml
/usr/bin/qus
/usr/bin/qusd
/usr/lib/systemd/system/qusd.service
/usr/lib/systemd/user/qus-podman.service
/usr/lib/systemd/user/qusd-podman.service
/usr/share/bash-completion/completions/qus
/usr/share/bash-completion/completions/qusd
/usr/share/fish/vendor_completions.d/qus.fish
/usr/share/fish/vendor_completions.d/qusd.fish
/usr/share/man/man1/qus.1.gz
/usr/share/man/man5/qus.d.5.gz
/usr/share/man/man8/qusd.8.gz
/usr/share/zsh/vendor-completions/_qus
/usr/share/zsh/vendor-completions/_qusd"
got=$(cd "$stage" && find . -type f | sed 's/^\.//' | sort)
[ "$got" = "$expected" ] && echo "ok   make install file list" || { bad "make install file list"; diff <(echo "$expected") <(echo "$got") || true; }
# make install does not build (root may have no cargo) and puts $(BINDIR)
# into the units.
local_stage=$(mktemp -d)
make install DESTDIR="$local_stage" PREFIX=/usr/local >/dev/null
grep -qx "ExecStart=/usr/local/bin/qusd" "$local_stage/usr/local/lib/systemd/system/qusd.service" &&
    grep -q "ExecStart=/usr/bin/podman unshare /usr/local/bin/qusd" "$local_stage/usr/local/lib/systemd/user/qusd-podman.service" &&
    grep -qx "ExecStart=/usr/local/bin/qus podman register" "$local_stage/usr/local/lib/systemd/user/qus-podman.service" &&
    echo "ok   make install PREFIX=/usr/local: units run /usr/local/bin" || bad "units with PREFIX=/usr/local"
[ ! -e "$local_stage/usr/local/lib/qus.d" ] && [ -d "$stage/usr/lib/qus.d" ] &&
    echo "ok   make install makes /usr/lib/qus.d (which qus reads) for PREFIX=/usr only" ||
    bad "make install: a qus.d directory qus never reads, or none where it reads"
rm -rf "$local_stage"
clean_copy=$(mktemp -d)
git ls-files -z | xargs -0 cp --parents -t "$clean_copy"
if out=$(make -C "$clean_copy" install DESTDIR="$clean_copy/stage" CARGO=false 2>&1); then
    bad "make install in an unbuilt tree succeeded"
elif [[ $out == *"run 'make' first"* ]]; then echo "ok   make install does not build: says to run make first"
else bad "make install unbuilt: $out"; fi
rm -rf "$clean_copy"
# The user units, verified as the user manager would load them (with the
# staged binaries standing in for /usr/bin; podman comes from the rootless
# setup).
verify_dir=$(mktemp -d)
for unit in "$stage"/usr/lib/systemd/user/*.service; do
    sed "s|/usr/bin/qus|$stage/usr/bin/qus|g" "$unit" > "$verify_dir/$(basename "$unit")"
done
for unit in "$verify_dir"/*.service; do
    if out=$(XDG_RUNTIME_DIR=$verify_dir systemd-analyze verify --user --man=no "$unit" 2>&1); [ -z "$out" ]; then
        echo "ok   systemd-analyze verify --user $(basename "$unit")"
    else bad "verify $(basename "$unit"): $out"; fi
done
rm -rf "$verify_dir"
# The man pages document every option --help lists, for every subcommand,
# and refer only to pages that exist (ours, or installed here).
qus_bin=$stage/usr/bin/qus
man_text() { MANWIDTH=200 man -l "$1" 2>/dev/null | col -b; }
qus_man=$(man_text "$stage/usr/share/man/man1/qus.1.gz")
qusd_man=$(man_text "$stage/usr/share/man/man8/qusd.8.gz")
missing=""
for sub in "" status register unregister config export test arches disable enable which run podman buildah; do
    for opt in $($qus_bin $sub --help | grep -oE -- '--[a-z][a-z-]+' | sort -u); do
        grep -q -- "$opt" <<<"$qus_man" || missing="$missing qus $sub $opt;"
    done
done
for opt in $($stage/usr/bin/qusd --help | grep -oE -- '--[a-z][a-z-]+' | sort -u); do
    grep -q -- "$opt" <<<"$qusd_man" || missing="$missing qusd $opt;"
done
[ -z "$missing" ] && echo "ok   qus(1) and qusd(8) document every option of --help" || bad "undocumented options:$missing"
for section in "EXIT STATUS" "ENVIRONMENT" "FILES" "EXAMPLES" "STATES" "COMMANDS"; do
    grep -q "^$section" <<<"$qus_man" || bad "qus(1) lacks $section"
done
for section in "WHAT IT WATCHES" "SIGNALS" "SD_NOTIFY" "FILES"; do
    grep -q "^$section" <<<"$qusd_man" || bad "qusd(8) lacks $section"
done
refs=$(for page in "$stage"/usr/share/man/man*/*.gz; do zcat "$page"; done |
    grep -oE '^\.BR [a-z0-9._-]+ \([0-9]\)' | sed -E 's/^\.BR ([^ ]+) \(([0-9])\)/\1.\2/' | sort -u)
dangling=""
for ref in $refs; do
    case $ref in qus.1|qusd.8|qus.d.5) continue ;; esac
    man -w "${ref##*.}" "${ref%.*}" >/dev/null 2>&1 || dangling="$dangling $ref"
done
[ -z "$dangling" ] && echo "ok   man pages refer only to existing pages ($(echo $refs | wc -w) references)" || bad "man pages refer to missing pages:$dangling"
# Completions complete values: arch names and aliases, flags, log levels.
comp=$(cat "$stage/usr/share/bash-completion/completions/qus")
comp_missing=""
for v in aarch64 arm64 arm/v7 armhf all PFC warn riscv64; do
    grep -q -- "$v" <<<"$comp" || comp_missing="$comp_missing $v"
done
[ -z "$comp_missing" ] && echo "ok   bash completion offers arch names, aliases, flags and log levels" ||
    bad "bash completion lacks$comp_missing"
# The README does not drift: its `qus --help` is the real one, and every
# repository path it names exists.
readme_help=$(sed -n '/^\$ qus --help$/,/^```$/p' README.md | sed '1d;$d')
if [ "$readme_help" = "$($qus_bin --help)" ]; then echo "ok   README's qus --help is the real output"
else bad "README's qus --help differs:"; diff <(echo "$readme_help") <($qus_bin --help) || true; fi
# The docs users look for: the C-flag decision, the rootless flows, and
# the "Coming from" equivalents of every peer tool.
docs_missing=0
for phrase in "Why C is not the default" "allow_dynamic" "P on kernels before 5.12" "append = true"; do
    zcat "$stage/usr/share/man/man5/qus.d.5.gz" | grep -q "$phrase" || { bad "qus.d(5) lacks \"$phrase\""; docs_missing=1; }
done
for phrase in "tonistiigi/binfmt --install arm64" "multiarch/qemu-user-static --reset -p yes" \
              "qemu-binfmt-conf.sh --qemu-path" "update-binfmts --display" "systemd-binfmt" \
              "## Without root" "qus podman register" "qus buildah" "qus run --" "## In CI" \
              "## Container" "image: ghcr.io/qus-project/qus:binfmt" "qus --reset -p yes"; do
    grep -qF -- "$phrase" README.md || { bad "README lacks \"$phrase\""; docs_missing=1; }
done
[ "$docs_missing" = 0 ] && echo "ok   qus.d(5) and the README cover the C flag, dynamic emulators, old kernels, rootless use, peers and CI"
# The README stays an introduction (the manual is docs/), and neither it
# nor a docs page names a repository path that does not exist.
readme_lines=$(wc -l < README.md)
[ "$readme_lines" -le 300 ] && echo "ok   README.md has $readme_lines lines (at most 300)" ||
    bad "README.md has $readme_lines lines (at most 300)"
# The contributors' layout names every source file.
unlisted=""
for f in $(find src -name '*.rs' | sort); do grep -q "^$f " docs/architecture.md || unlisted="$unlisted $f"; done
[ -z "$unlisted" ] && echo "ok   docs/architecture.md's layout lists every file in src/" ||
    bad "docs/architecture.md's layout lacks:$unlisted"
absent=""
for doc in README.md docs/*.md; do
    for path in $(grep -oE '`(dist|tests|packaging|man|etc|bench|benches|probes|examples|src)/[A-Za-z0-9_./-]+`' "$doc" | tr -d '`' | sort -u); do
        [ -e "$path" ] || absent="$absent $doc:$path"
    done
done
[ -z "$absent" ] && echo "ok   every repository path the README and docs/*.md name exists" || bad "README or docs name missing paths:$absent"
for page in qus.1 qusd.8 qus.d.5; do
    sec=${page##*.}
    if man -l "$stage/usr/share/man/man$sec/$page.gz" 2>&1 | grep "^NAME" >/dev/null; then echo "ok   man $page renders"; else bad "man $page"; fi
done

step "Debian package"
# What ships is static: no program interpreter to load at start-up.
# (readelf's output first: a missing readelf must fail, not pass as "static".)
for b in qus qusd; do
    if ! hdr=$(readelf -lW "target/dist/$b" 2>&1); then bad "readelf target/dist/$b failed (apt-get install binutils): $hdr"
    elif grep -q "program interpreter" <<<"$hdr"; then bad "target/dist/$b is dynamically linked"
    else echo "ok   target/dist/$b is static"; fi
done
cargo deb --no-build --no-strip
deb=$(ls -t target/debian/qus_*.deb | head -1)
# Debian's static emulators moved to qemu-user in 1:9.1 (trixie, sid);
# bookworm's qemu-user is dynamic, so there qemu-user-static is taken.
[ "$(dpkg-deb -f "$deb" Recommends)" = "qemu-user (>= 1:9.1) | qemu-user-static" ] &&
    echo "ok   Recommends: qemu-user (>= 1:9.1) | qemu-user-static" || bad "Recommends: $(dpkg-deb -f "$deb" Recommends)"
[ "$(dpkg-deb -f "$deb" Depends)" = "init-system-helpers (>= 1.56)" ] && echo "ok   Depends: init-system-helpers (>= 1.56) alone (static binaries need no libraries)" || bad "Depends: $(dpkg-deb -f "$deb" Depends)"
ctl=$(mktemp -d)
dpkg-deb -e "$deb" "$ctl"
grep -q "deb-systemd-helper enable qusd.service" "$ctl/postinst" && echo "ok   postinst enables qusd" || bad "postinst"
grep -q "deb-systemd-invoke stop qusd.service" "$ctl/prerm" && echo "ok   prerm stops qusd" || bad "prerm"
grep -q "deb-systemd-helper purge qusd.service" "$ctl/postrm" && echo "ok   postrm purges" || bad "postrm"
rm -rf "$ctl"
# The manual ships beside the README, with the paths the README links to.
debfiles=$(dpkg-deb -c "$deb" | awk '{print $NF}' | sed 's|^\./|/|')
missing=""
for f in README.md RELIABILITY.md CHANGELOG.md docs/configuration.md docs/json.md; do
    echo "$debfiles" | grep -x "/usr/share/doc/qus/$f" >/dev/null || missing="$missing $f"
done
[ -z "$missing" ] && echo "ok   deb ships README.md, RELIABILITY.md, CHANGELOG.md and docs/ in /usr/share/doc/qus" ||
    bad "deb lacks in /usr/share/doc/qus:$missing"
# lintian exits 0 (clean) or 1 (tags at error level, judged below); any
# other status, or no lintian, is a check that did not run.
command -v lintian >/dev/null || bad "lintian is missing: apt-get install lintian"
lintian_rc=0
lintian --info "$deb" > target/lintian.txt 2>&1 || lintian_rc=$?
cat target/lintian.txt
[ "$lintian_rc" -le 1 ] || bad "lintian itself failed (exit $lintian_rc)"
if grep -q "^E:" target/lintian.txt; then bad "lintian errors"; else echo "ok   lintian: no errors"; fi
if dpkg-deb -f "$deb" Homepage | grep -q invalid; then bad "deb Homepage points nowhere"
else echo "ok   deb has no made-up Homepage"; fi
if grep -qE "shared-library-lacks-prerequisites|empty-field" target/lintian.txt; then bad "lintian: static binaries taken for libraries, or an empty field"
else echo "ok   lintian: the static binaries are not taken for libraries, no empty field"; fi

step "RPM"
cargo generate-rpm
rpm=$(ls -t target/generate-rpm/qus-*.rpm | head -1)
rpmfiles=$(rpm -qlp "$rpm" 2>/dev/null | sort)
echo "$rpmfiles"
for f in /usr/bin/qus /usr/bin/qusd /usr/lib/systemd/system/qusd.service /etc/qus.d/50-example.toml \
         /usr/lib/systemd/user/qus-podman.service /usr/lib/systemd/user/qusd-podman.service \
         /usr/share/man/man1/qus.1.gz /usr/share/man/man5/qus.d.5.gz /usr/share/man/man8/qusd.8.gz \
         /usr/share/doc/qus/README.md /usr/share/doc/qus/CHANGELOG.md /usr/share/doc/qus/docs/configuration.md; do
    echo "$rpmfiles" | grep -x "$f" >/dev/null || bad "rpm lacks $f"
done
rpm -qp --scripts "$rpm" 2>/dev/null | grep "systemctl preset qusd.service" >/dev/null && echo "ok   rpm %post presets qusd" || bad "rpm scripts"
rpm -qp --recommends "$rpm" 2>/dev/null | grep qemu-user-static >/dev/null && echo "ok   rpm recommends qemu-user-static" || bad "rpm recommends"

step "CI recipe: action.yml runs dist/ci/setup-qus.sh; run it as a job would"
grep -q 'run: "\\"$GITHUB_ACTION_PATH/dist/ci/setup-qus.sh\\""' action.yml &&
    grep -q 'QUS_PLATFORMS: ${{ inputs.platforms }}' action.yml &&
    echo "ok   action.yml runs dist/ci/setup-qus.sh with the inputs" || bad "action.yml"
# In a private namespace with its own binfmt_misc, as root there (as on a
# CI runner), with the binary just built.
ci_out=$(unshare --user --map-root-user --mount sh -c '
    bm=$(mktemp -d) && mount -t binfmt_misc none "$bm" &&
    out=$(mktemp) &&
    conf=$(mktemp -d) emu=$(mktemp -d)/qemu &&
    QUS_BINFMT_MISC=$bm QUS_STATE_DIR=$(mktemp -d)/state QUS_BIN=$PWD/target/dist/qus \
    QUS_CONFIG_DIRS=$conf QUS_QEMU_DIR=$emu QUS_RELEASE_URL=http://127.0.0.1:1 \
    QUS_PLATFORMS=arm64,linux/s390x QUS_FLAGS=PF GITHUB_OUTPUT=$out dist/ci/setup-qus.sh &&
    cat "$out" && probes/bin/aarch64 && probes/bin/s390x &&
    echo "entry: $(sed -n "s/^interpreter //p" "$bm/qemu-aarch64")"' 2>&1)
if [[ $ci_out == *"platforms=arm64 linux/s390x"* && $ci_out == *"qus-probe aarch64"* && $ci_out == *"qus-probe s390x"* &&
      $ci_out == *"entry: /tmp/"*"/qemu/qemu-aarch64"* && $ci_out == *"QEMU 1:11."* ]]; then
    echo "ok   setup-qus.sh with QUS_BIN and no release takes QEMU channel 11 from Debian, registers and tests arm64 and linux/s390x; foreign programs run"
else bad "setup-qus.sh: $ci_out"; fi

# Inputs are checked against their grammar before any use: a platform
# that would be an option is refused (the qemu input: with the release).
inj_out=$(QUS_BIN=/bin/false QUS_PLATFORMS="arm64,--help" dist/ci/setup-qus.sh 2>&1) && bad "setup-qus.sh took --help for a platform"
[[ $inj_out == *"'--help' is not an arch or platform name"* ]] &&
    echo "ok   a platform input that would be an option is refused" || bad "platforms input --help: $inj_out"

step "Kubernetes manifests"
kubernetes-validate --strict packaging/kubernetes/qus.yaml || bad "kubernetes-validate"

step "Container image"
untagged() { buildah --storage-driver vfs images -q --filter dangling=true | wc -l; }
untagged_before=$(untagged)
since=$(mktemp) # build contexts made after this are checked to be gone
packaging/container/build.sh localhost/qus:ci
tests/container/check.sh localhost/qus:ci || bad "container check"
# Rebuilding a tag must not leave the old image behind, untagged: CI and
# developers rebuild the same tags over and over, ~350 MB each time.
first=$(buildah --storage-driver vfs images -q --no-trunc localhost/qus:ci | head -1)
packaging/container/build.sh localhost/qus:ci >/dev/null
second=$(buildah --storage-driver vfs images -q --no-trunc localhost/qus:ci | head -1)
if [ -n "$first" ] && [ "$first" != "$second" ] &&
    ! buildah --storage-driver vfs inspect --type image "$first" >/dev/null 2>&1 &&
    [ "$(untagged)" -le "$untagged_before" ]; then
    echo "ok   rebuilding localhost/qus:ci removes the image it replaces (untagged images: $(untagged))"
else bad "rebuild: old image ${first:0:12} -> ${second:0:12}; untagged images $untagged_before -> $(untagged)"; fi
# A build that fails once its context is made (here: buildah refuses the
# storage driver) must still remove that context and its emulators.
if BUILDAH_STORAGE_DRIVER=no-such-driver packaging/container/build.sh localhost/qus:never >/dev/null 2>&1; then
    bad "build.sh succeeded with a storage driver that does not exist"
fi
scratch_left=$(find "$TMPDIR" -maxdepth 3 -name Containerfile -newer "$since" 2>/dev/null)
[ -z "$scratch_left" ] && echo "ok   build.sh leaves no build context behind, also when the build fails" ||
    bad "build contexts left: $scratch_left"

step "Multi-arch images: every host arch, one manifest list"
if out=$(packaging/container/build.sh --arch arm64,sparc 2>&1); then bad "build.sh accepted an unknown arch"
elif [[ $out == *"unknown arch sparc (known: amd64,arm64,arm,ppc64le,s390x,386)"* ]]; then
    echo "ok   build.sh refuses an unknown arch before building anything, naming it"
else bad "build.sh unknown arch: $out"; fi
if packaging/container/build.sh --all --manifest localhost/qus-ci; then
    tests/container/multiarch.sh localhost/qus-ci:latest amd64,arm64,arm,ppc64le,s390x,386 || bad "multi-arch images"
    v=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
    # The QEMU the images carry is the default channel's (11.x), not
    # this machine's own qemu-user-static (bookworm's 7.2).
    qv=$(buildah --storage-driver vfs inspect --type image --format '{{index .OCIv1.Config.Labels "org.qus.qemu.version"}}' \
        "localhost/qus-arm64:$v" | sed -E 's/^[0-9]+://; s/^([0-9]+\.[0-9]+).*/\1/')
    [[ $qv == "$(packaging/qemu/channel.sh --default)".* ]] &&
        echo "ok   the images carry the default QEMU channel ($qv)" || bad "images carry QEMU '$qv'"
    for t in "$v-qemu$qv" "qemu$qv" latest binfmt; do
        buildah --storage-driver vfs manifest inspect "localhost/qus-ci:$t" >/dev/null &&
            echo "ok   tagged localhost/qus-ci:$t" || bad "no localhost/qus-ci:$t tag"
    done
else
    bad "multi-arch build"
fi
# The OCI layout those builds wrote, pushed as published to a local
# registry and pulled by rootless podman (setup-qemu-action's sequence).
step "Registry: target/oci pushed as published, pulled and run by rootless podman"
tests/container/registry.sh target/oci || bad "registry and rootless podman"
grep -q "image: localhost/qus:$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)-qemu" packaging/kubernetes/qus.yaml &&
    echo "ok   the Kubernetes DaemonSet uses the multi-arch image name" || bad "DaemonSet image name"

step "Boot test"
tests/boot/run.sh "$deb" || bad "boot test"

step "Sizes"
ls -l "$deb" "$rpm" | awk '{print $5, $9}'
buildah --storage-driver vfs images --format '{{.Size}} {{.Name}}:{{.Tag}}' localhost/qus:ci

# make release runs cargo deb for every arch, which leaves target/debian
# without this machine's .deb: it goes after the boot test and the sizes.
step "Release assets: make release, then the CI script against them"
v=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
if make -s release >/dev/null 2>"$TMPDIR/release.err"; then
    ra=target/release-assets
    n_tar=$(ls "$ra"/qus-*-linux-*.tar.gz | wc -l) n_deb=$(ls "$ra"/qus_*.deb | wc -l)
    n_rpm=$(ls "$ra"/qus-[0-9]*.rpm | wc -l) n_emu=$(ls "$ra"/qemu-*-linux-*.tar.zst | wc -l)
    n_cdeb=$(ls "$ra"/qus-qemu11_*.deb | wc -l) n_crpm=$(ls "$ra"/qus-qemu11-*.rpm | wc -l)
    [ "$n_tar$n_deb$n_rpm$n_emu$n_cdeb$n_crpm" = 666666 ] &&
        echo "ok   6 tarballs, 6 .deb, 6 .rpm, 6 emulator archives, 6 qus-qemu11 .deb and .rpm" ||
        bad "release assets: $n_tar tarballs, $n_deb deb, $n_rpm rpm, $n_emu emulator archives, $n_cdeb qus-qemu11 deb, $n_crpm rpm"
    (cd "$ra" && sha256sum -c --quiet SHA256SUMS) && [ "$(wc -l < "$ra/SHA256SUMS")" = 36 ] &&
        echo "ok   SHA256SUMS covers and matches all 36" || bad "SHA256SUMS"
    for kind in qus_ qus-qemu11_; do
        debarches=$(for f in "$ra"/$kind*.deb; do dpkg-deb -f "$f" Architecture; done | sort | paste -sd' ')
        [ "$debarches" = "amd64 arm64 armhf i386 ppc64el s390x" ] && echo "ok   ${kind%_} .deb per arch: $debarches" || bad "${kind%_} .deb arches: $debarches"
    done
    for kind in 'qus-[0-9]' qus-qemu11-; do
        rpmarches=$(for f in "$ra"/$kind*.rpm; do rpm -qp --qf '%{ARCH}\n' "$f" 2>/dev/null; done | sort | paste -sd' ')
        echo "     $kind .rpm arches: $rpmarches"
        [ "$(echo "$rpmarches" | wc -w)" = 6 ] || bad "$kind rpm arches: $rpmarches"
    done
    # The QEMU channel package: lintian-clean (info level included), the
    # emulators where its drop-in points, a drop-in qus accepts, QEMU's
    # licence naming the Debian source it was built from.
    cdeb=$(ls "$ra"/qus-qemu11_*_amd64.deb)
    clint=$(lintian -I "$cdeb" 2>&1 | grep -v 'running with root privileges') || true
    [ -z "$clint" ] && echo "ok   lintian -I $(basename "$cdeb"): clean" || bad "lintian on the channel package: $clint"
    cx=$TMPDIR/channel-deb
    rm -rf "$cx" && dpkg-deb -x "$cdeb" "$cx"
    n_cemu=$(find "$cx/usr/lib/qus/qemu/11" -name 'qemu-*' -type f -perm -0755 | wc -l)
    cdrop=$(ls "$cx"/usr/lib/qus.d/)
    cconf=$(target/dist/qus --config-dir "$cx/usr/lib/qus.d" config 2>&1 | grep '^search_path')
    ccopy=$(head -5 "$cx/usr/share/doc/qus-qemu11/copyright")
    crpm=$(rpm -qlp "$ra"/qus-qemu11-*.x86_64.rpm 2>/dev/null)
    if [ "$n_cemu" -ge 20 ] && [ "$cdrop" = 40-qemu-11.toml ] &&
       [[ $cconf == 'search_path = ["/usr/bin", "/usr/local/bin", "/usr/lib/qus/qemu/11"]'* ]] &&
       [[ $ccopy == *"Debian source package qemu 1:11."* ]] && grep -q "GNU General Public License" "$cx/usr/share/doc/qus-qemu11/copyright" &&
       grep -qx /usr/lib/qus.d/40-qemu-11.toml <<<"$crpm" && grep -qx /usr/lib/qus/qemu/11/qemu-aarch64 <<<"$crpm"; then
        echo "ok   qus-qemu11: $n_cemu emulators in /usr/lib/qus/qemu/11, $cdrop appends it to search_path, copyright names $(grep -o 'qemu 1:11[^ ]*' <<<"$ccopy" | head -1)"
    else bad "qus-qemu11 contents: $n_cemu emulators, drop-in [$cdrop], config: $cconf, copyright: $ccopy, rpm: $(echo "$crpm" | head -3)"; fi
    tar -xzf "$ra/qus-$v-linux-arm64.tar.gz" -O ./usr/bin/qus > "$TMPDIR/qus-arm64"
    m=$(od -An -tx1 -j18 -N2 "$TMPDIR/qus-arm64" | tr -d ' ')
    listing=$(tar -tzf "$ra/qus-$v-linux-arm64.tar.gz")
    [ "$m" = b700 ] && grep -qx './usr/share/man/man1/qus.1.gz' <<<"$listing" &&
        grep -qx './usr/lib/systemd/system/qusd.service' <<<"$listing" &&
        echo "ok   the arm64 tarball holds an aarch64 qus, man pages and units" || bad "arm64 tarball (machine $m): $listing"
    # The CI script as a job runs it: qus and the emulators downloaded
    # from a local server (127.0.0.1 only, stopped at the end) and
    # checked against SHA256SUMS, in a private binfmt_misc.
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    python3 -m http.server --bind 127.0.0.1 --directory "$ra" "$port" >"$TMPDIR/http.log" 2>&1 &
    http=$!
    for _ in $(seq 100); do curl -fsS -o /dev/null "http://127.0.0.1:$port/SHA256SUMS" 2>/dev/null && break; sleep 0.1; done
    start=$(date +%s%N)
    act_out=$(unshare --user --map-root-user --mount sh -c '
        bm=$(mktemp -d) && mount -t binfmt_misc none "$bm" &&
        conf=$(mktemp -d) emu=$(mktemp -d)/qemu run=$(mktemp -d) &&
        env -u QUS_BIN PATH=/usr/sbin:/usr/bin:/sbin:/bin RUNNER_TEMP=$run \
            QUS_BINFMT_MISC=$bm QUS_STATE_DIR=$(mktemp -d)/state QUS_CONFIG_DIRS=$conf QUS_QEMU_DIR=$emu \
            QUS_RELEASE_URL=$1 QUS_PLATFORMS=arm64,riscv64,linux/ppc64le dist/ci/setup-qus.sh &&
        probes/bin/riscv64 && echo "entry: $(sed -n "s/^interpreter //p" "$bm/qemu-riscv64")" &&
        echo "left in RUNNER_TEMP: [$(ls -A "$run")]"' sh "http://127.0.0.1:$port" 2>&1)
    took=$((($(date +%s%N) - start) / 1000000))
    bytes=$(echo "$act_out" | sed -n 's/.*(\([0-9]*\) bytes, sha256 ok)/\1/p' | paste -sd+ | bc)
    if [[ $act_out == *"qus-probe riscv64"* && $act_out == *"entry: /tmp/"*"/qemu/qemu-riscv64"* &&
          $act_out == *"3 pass"* && $act_out == *"left in RUNNER_TEMP: []"* && $act_out == *"sha256 ok"* &&
          $act_out != *"Debian's archive"* ]]; then
        echo "ok   setup-qus.sh from the release: $bytes bytes downloaded and checked, $took ms to qus test passing"
    else bad "setup-qus.sh from the release: $act_out"; fi
    # A local user who made /tmp/qus/bin first (the fixed path the script
    # once installed qus to, then ran it from as root) and swaps in a
    # payload whenever something else appears there: the script, run as
    # root with no RUNNER_TEMP, writes nothing there and runs only the
    # binary it checked, from its own mktemp directory.
    attacker=${QUS_ROOTLESS_USER:-qustest}
    as_attacker() { setpriv --reuid "$attacker" --regid "$attacker" --clear-groups "$@"; }
    pwned=/var/tmp/qus-pwned-by-$attacker
    rm -rf /tmp/qus "$pwned"
    as_attacker mkdir -p /tmp/qus/bin
    as_attacker chmod 0777 /tmp/qus /tmp/qus/bin
    as_attacker sh -c 'printf "#!/bin/sh\ntouch %s\necho 32 registered, 0 errors\n" "$1" > /tmp/qus/payload &&
        chmod 0755 /tmp/qus/payload' sh "$pwned"
    as_attacker sh -c 'cd /tmp/qus/bin && while :; do
        if [ -e qus ] && ! cmp -s qus ../payload; then echo "root wrote $(stat -c %U qus)" >> ../seen; cp ../payload .q && mv -f .q qus; fi
        [ -e ../stop ] && exit 0; done' &
    swapper=$!
    hole_rc=0
    hole_out=$(unshare --user --map-root-user --mount sh -c '
        bm=$(mktemp -d) && mount -t binfmt_misc none "$bm" &&
        env -u QUS_BIN -u RUNNER_TEMP -u TMPDIR PATH=/usr/sbin:/usr/bin:/sbin:/bin \
            QUS_BINFMT_MISC=$bm QUS_STATE_DIR=$(mktemp -d)/state QUS_CONFIG_DIRS=$(mktemp -d) QUS_QEMU_DIR=$(mktemp -d)/qemu \
            QUS_RELEASE_URL=$1 QUS_PLATFORMS=arm64 dist/ci/setup-qus.sh' sh "http://127.0.0.1:$port" 2>&1) || hole_rc=$?
    as_attacker touch /tmp/qus/stop; wait "$swapper" 2>/dev/null || true
    if [ $hole_rc = 0 ] && [[ $hole_out == *"1 pass"* ]] && [ ! -e "$pwned" ] && [ ! -e /tmp/qus/seen ] &&
       [ -z "$(ls -A /tmp/qus/bin)" ]; then
        echo "ok   a local user's /tmp/qus/bin with a payload swapper: nothing written there, nothing of theirs run as root"
    else bad "setup-qus.sh ran or wrote where another user could swap it (rc $hole_rc; $(cat /tmp/qus/seen 2>/dev/null); pwned: $(ls "$pwned" 2>&1)): $hole_out"; fi
    rm -rf /tmp/qus "$pwned"
    # A qemu input that would be a sed program (GNU sed's e command runs a
    # shell command) where the script reads the release's SHA256SUMS.
    marker=$TMPDIR/sed-e-ran
    inj_out=$(QUS_BIN=/bin/false QUS_RELEASE_URL="http://127.0.0.1:$port" QUS_QEMU_DIR=$TMPDIR/inj-qemu QUS_CONFIG_DIRS=$TMPDIR/inj-conf \
        QUS_QEMU="11\)/;e touch $marker;#" dist/ci/setup-qus.sh 2>&1) && bad "setup-qus.sh took a sed program as its qemu input"
    [[ $inj_out == *"must be a channel such as 11"* ]] && [ ! -e "$marker" ] &&
        echo "ok   a qemu input holding a sed program is refused before any use" || bad "qemu input injection: $inj_out"
    kill "$http" 2>/dev/null; wait "$http" 2>/dev/null || true
    # A tampered asset is refused, not installed.
    tampered=$(mktemp -d)
    cp "$ra"/qus-* "$ra"/qus_* "$ra"/qemu-* "$ra"/SHA256SUMS "$tampered/" && rm -f "$tampered"/qus-qemu* && printf 'x' >> "$tampered/qus-$v-linux-amd64.tar.gz"
    python3 -m http.server --bind 127.0.0.1 --directory "$tampered" "$port" >"$TMPDIR/http.log" 2>&1 &
    http=$!
    for _ in $(seq 100); do curl -fsS -o /dev/null "http://127.0.0.1:$port/SHA256SUMS" 2>/dev/null && break; sleep 0.1; done
    bad_out=$(unshare --user --map-root-user --mount sh -c '
        bm=$(mktemp -d) && mount -t binfmt_misc none "$bm" &&
        env -u QUS_BIN RUNNER_TEMP=$2 QUS_BINFMT_MISC=$bm QUS_STATE_DIR=$(mktemp -d)/state \
            QUS_CONFIG_DIRS=$(mktemp -d) QUS_QEMU_DIR=$(mktemp -d) QUS_RELEASE_URL=$1 dist/ci/setup-qus.sh' \
        sh "http://127.0.0.1:$port" "$tampered" 2>&1) && bad "setup-qus.sh installed a tampered tarball"
    kill "$http" 2>/dev/null; wait "$http" 2>/dev/null || true
    [[ $bad_out == *"does not match its SHA256SUMS line"* ]] && [ -z "$(ls -A "$tampered" | grep '^qus-setup\.\|^qus$')" ] &&
        echo "ok   a tarball that does not match SHA256SUMS is refused" || bad "tampered tarball: $bad_out"
    rm -rf "$tampered"
    ls -l "$ra" | awk 'NR > 1 {print $5, $9}'
else
    bad "make release: $(tail -5 "$TMPDIR/release.err")"
fi

if [ $fail = 0 ]; then echo "packaging: 1 passed, 0 failed"; else echo "packaging: 0 passed, 1 failed"; fi
exit $fail
