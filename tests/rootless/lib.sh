# Shared by the tests that act as the rootless tests' user (sourced by
# tests/rootless/run.sh and tests/container/registry.sh). The caller sets
# user, uid and home; as_user_dir (default /) is where commands start, and
# as_user_path goes in front of the system PATH.

# As the user, in a login-like environment, nothing inherited from root.
as_user() {
    (cd "${as_user_dir:-/}" && setpriv --reuid="$uid" --regid="$uid" --init-groups \
        env -i HOME="$home" USER="$user" LOGNAME="$user" \
        XDG_RUNTIME_DIR="/run/user/$uid" PATH="${as_user_path:+$as_user_path:}/usr/local/bin:/usr/bin:/bin" "$@")
}

# The host's binfmt_misc, every file: compared before and after, it must
# come out exactly as it went in.
host_listing() {
    if mountpoint -q /proc/sys/fs/binfmt_misc; then
        for f in /proc/sys/fs/binfmt_misc/*; do echo "== $f"; cat "$f" 2>/dev/null; done
    else
        echo "not mounted"
    fi
}
