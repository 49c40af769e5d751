#!/bin/bash
# Build every shipped artefact from the repo and check it, as CI does:
# make install DESTDIR=, .deb (+ lintian), .rpm (+ rpm -qlp), the container
# image (+ run from its own rootfs), the Kubernetes manifests (schemas),
# and the real boot test of the .deb under systemd in systemd-nspawn.
#
# Needs (the CI script installs them): cargo-deb, cargo-generate-rpm,
# lintian, rpm, buildah, debootstrap, systemd-container, bc, binutils,
# kubernetes-validate (PyPI), qemu-user-static.
set -euo pipefail
cd "$(dirname "$0")/../.."
fail=0
step() { echo; echo "== $*"; }
bad() { echo "FAIL $*"; fail=1; }

step "make all + make install DESTDIR"
make all
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
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
for page in qus.1 qusd.8 qus.d.5; do
    sec=${page##*.}
    if man -l "$stage/usr/share/man/man$sec/$page.gz" 2>&1 | grep "^NAME" >/dev/null; then echo "ok   man $page renders"; else bad "man $page"; fi
done

step "Debian package"
cargo deb --no-build --no-strip
deb=$(ls -t target/debian/qus_*.deb | head -1)
[ "$(dpkg-deb -f "$deb" Recommends)" = qemu-user-static ] && echo "ok   Recommends: qemu-user-static" || bad "Recommends"
ctl=$(mktemp -d)
dpkg-deb -e "$deb" "$ctl"
grep -q "deb-systemd-helper enable qusd.service" "$ctl/postinst" && echo "ok   postinst enables qusd" || bad "postinst"
grep -q "deb-systemd-invoke stop qusd.service" "$ctl/prerm" && echo "ok   prerm stops qusd" || bad "prerm"
grep -q "deb-systemd-helper purge qusd.service" "$ctl/postrm" && echo "ok   postrm purges" || bad "postrm"
rm -rf "$ctl"
lintian --info "$deb" > target/lintian.txt 2>&1 || true
cat target/lintian.txt
if grep -q "^E:" target/lintian.txt; then bad "lintian errors"; else echo "ok   lintian: no errors"; fi

step "RPM"
cargo generate-rpm
rpm=$(ls -t target/generate-rpm/qus-*.rpm | head -1)
rpmfiles=$(rpm -qlp "$rpm" 2>/dev/null | sort)
echo "$rpmfiles"
for f in /usr/bin/qus /usr/bin/qusd /usr/lib/systemd/system/qusd.service /etc/qus.d/50-example.toml \
         /usr/lib/systemd/user/qus-podman.service /usr/lib/systemd/user/qusd-podman.service \
         /usr/share/man/man1/qus.1.gz /usr/share/man/man5/qus.d.5.gz /usr/share/man/man8/qusd.8.gz; do
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
    QUS_BINFMT_MISC=$bm QUS_STATE_DIR=$(mktemp -d)/state QUS_BIN=$PWD/target/release/qus \
    QUS_PLATFORMS=arm64,linux/s390x QUS_FLAGS=PF GITHUB_OUTPUT=$out dist/ci/setup-qus.sh &&
    cat "$out" && probes/bin/aarch64 && probes/bin/s390x' 2>&1)
if [[ $ci_out == *"platforms=arm64 linux/s390x"* && $ci_out == *"qus-probe aarch64"* && $ci_out == *"qus-probe s390x"* ]]; then
    echo "ok   setup-qus.sh registers and tests arm64 and linux/s390x; foreign programs run"
else bad "setup-qus.sh: $ci_out"; fi

step "Kubernetes manifests"
kubernetes-validate --strict packaging/kubernetes/qus.yaml || bad "kubernetes-validate"

step "Container image"
packaging/container/build.sh localhost/qus:ci
tests/container/check.sh localhost/qus:ci || bad "container check"

step "Boot test"
tests/boot/run.sh "$deb" || bad "boot test"

step "Sizes"
ls -l "$deb" "$rpm" | awk '{print $5, $9}'
buildah --storage-driver vfs images --format '{{.Size}} {{.Name}}:{{.Tag}}' localhost/qus:ci

if [ $fail = 0 ]; then echo "packaging: 1 passed, 0 failed"; else echo "packaging: 0 passed, 1 failed"; fi
exit $fail
