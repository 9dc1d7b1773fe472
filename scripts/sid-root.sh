#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# A minimal Debian sid root with Debian's CPython 3.14 and 3.15 (they need
# sid's libc, so they are not installed on the host), and commands run in it.
#
#   scripts/sid-root.sh pythons         prints the root's CPython versions: 3.14 3.15
#   scripts/sid-root.sh ensure          makes the root, unless it is already complete
#   scripts/sid-root.sh run CMD [ARG]   runs CMD in the root, in the current directory
#
# The root is $DHATC_SID_ROOT (default /var/cache/dhatc/sid-root), outside any
# checkout, so that every later run on this machine reuses it.  It is made by
# debootstrap --variant=minbase from $DHATC_SID_MIRROR (default Debian's own),
# then given the packages of scripts/system-packages.sh (the host's list) by
# apt-get.  A stamp file, written last, lists the packages it was made with:
# a root without it (an interrupted run) is removed and made again; a stamp
# that lacks a package needed now makes apt-get add it.
#
# `run` mounts what CMD needs in a mount and PID namespace of its own: /proc,
# /dev (with /dev/shm and /dev/pts), /sys as the host has it, a fresh /tmp, the host's
# DNS configuration and pip's configuration (the files and directories that
# scripts/pip-config-paths.py names) read-only at the same paths, and the
# current directory read-write at the same path.  No other process sees these
# mounts, and the kernel removes them when CMD ends, however it ends (a trap
# ends the namespace on Ctrl-C or SIGTERM): one run's cleanup never touches
# another run's mounts.  CMD gets a clean environment plus PIP_*, DHATC_*,
# the CA and proxy variables, CI and TERM from this one.
#
# Several runs at once: $DHATC_SID_ROOT.lock is held shared (flock) while a
# command runs in the root and exclusively while the root is made or
# completed, so no run changes the root under another one.
set -euo pipefail

SID_PYTHONS=(3.14 3.15)
script="$(realpath "${BASH_SOURCE[0]}")"
scripts_dir="$(dirname "$script")"
root="$(realpath -m "${DHATC_SID_ROOT:-/var/cache/dhatc/sid-root}")"
mirror="${DHATC_SID_MIRROR:-http://deb.debian.org/debian}"
stamp="$root/.dhatc-root-complete"
lock="$root.lock"
log="$root.log"
lock_wait_s=1200

fail() {  # STEP WHY...
    local step="$1"
    shift
    echo "dhatc sid-root: $step failed: $*" >&2
    exit 1
}

python_packages() {  # what debootstrap puts in: the interpreters, pip's CA store
    local version
    for version in "${SID_PYTHONS[@]}"; do
        # -testsuite: CPython's own tests (Debian ships them apart), which
        # the plugin's tests run as a real unittest suite, as on the host.
        printf '%s\n' "python$version-dev" "python$version-venv" "libpython$version-testsuite"
    done
    echo ca-certificates
}

needed_packages() {  # then apt-get adds the host's list
    source "$scripts_dir/system-packages.sh"
    python_packages
    printf '%s\n' "${system_packages[@]}"
}

missing_from_stamp() {  # prints the needed packages that the stamp does not list
    local pkg
    while read -r pkg; do
        grep -qxF "package $pkg" "$stamp" 2>/dev/null || echo "$pkg"
    done < <(needed_packages)
}

take_lock() {  # -s (shared) or -x (exclusive), on the open file $lock_fd
    if ! flock -n "$1" "$lock_fd"; then
        echo "dhatc sid-root: waiting for another run that uses $root (lock $lock)" >&2
        flock -w "$lock_wait_s" "$1" "$lock_fd" ||
            fail "locking $root" "another run held $lock for more than $lock_wait_s s"
    fi
}

mounts_under_root() {
    awk -v root="$root" '$5 == root || index($5, root "/") == 1 { print $5 }' /proc/self/mountinfo
}

signals_to_restore() {  # INT,QUIT: those this script was not started with ignored
    local ignored restore=()
    ignored=$((16#$(awk '/^SigIgn:/ { print $2 }' "/proc/$$/status")))
    (( ignored & 1 << (2 - 1) )) || restore+=(INT)
    (( ignored & 1 << (3 - 1) )) || restore+=(QUIT)
    (IFS=,; echo "${restore[*]}")
}

in_root_namespace() {  # WORKDIR RO-PATHS RW-PATHS CMD...: runs CMD in the root (see `run`)
    local ns_pid status=0 interrupted="" restore
    # A command started with & ignores SIGINT and SIGQUIT (no job control
    # here); CMD gets them back as this script has them, as on the host
    # (Python's KeyboardInterrupt needs SIGINT).
    restore="$(signals_to_restore)"
    # --kill-child: when unshare dies, its child (PID 1 of the namespace) is
    # killed, and with it every process of the namespace.
    unshare --mount --pid --fork --propagation private --kill-child=KILL \
        -- env ${restore:+"--default-signal=$restore"} bash "$script" __inside "$@" {lock_fd}>&- &
    ns_pid=$!
    trap 'interrupted=INT; kill -KILL "$ns_pid" 2>/dev/null || true' INT
    trap 'interrupted=TERM; kill -KILL "$ns_pid" 2>/dev/null || true' TERM HUP
    while :; do
        { wait "$ns_pid" && status=0 || status=$?; } 2>/dev/null  # (no "Killed" notice)
        kill -0 "$ns_pid" 2>/dev/null || break  # (a trap interrupted the wait)
    done
    trap - INT TERM HUP
    if [ -n "$interrupted" ]; then
        echo "dhatc sid-root: interrupted; the root's mounts for this run are gone" >&2
        kill -s "$interrupted" "$$"
    fi
    return "$status"
}

inside() {  # PID 1 of the namespace: WORKDIR RO-PATHS RW-PATHS CMD...
    local workdir="$1" ro_paths="$2" rw_paths="$3" path name
    shift 3
    { mount -t proc proc "$root/proc" &&
        mount --rbind /dev "$root/dev" &&
        mount --rbind /sys "$root/sys" &&
        mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"; } ||
        fail "mounting /proc, /dev, /sys and /tmp in the root" "mount failed (see above)"
    while read -r path; do
        [ -z "$path" ] || bind_at_same_path "$path" ro
    done <<<"$ro_paths"
    while read -r path; do
        [ -z "$path" ] || bind_at_same_path "$path" rw
    done <<<"$rw_paths"
    local env=(HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive
               PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
    for name in $(compgen -e); do
        case "$name" in
            PIP_* | DHATC_* | SSL_CERT_FILE | SSL_CERT_DIR | REQUESTS_CA_BUNDLE | \
                CURL_CA_BUNDLE | [Hh][Tt][Tt][Pp]_[Pp][Rr][Oo][Xx][Yy] | \
                [Hh][Tt][Tt][Pp][Ss]_[Pp][Rr][Oo][Xx][Yy] | [Nn][Oo]_[Pp][Rr][Oo][Xx][Yy] | \
                [Aa][Ll][Ll]_[Pp][Rr][Oo][Xx][Yy] | CI | TERM)
                env+=("$name=${!name}")
                ;;
        esac
    done
    # shellcheck disable=SC2016  # expanded by the root's bash
    chroot "$root" /usr/bin/env -i "${env[@]}" /bin/bash -c 'cd -- "$1" && shift && exec "$@"' \
        sid-root "$workdir" "$@"
}

bind_at_same_path() {  # HOST-PATH ro|rw: mounts HOST-PATH at the same path in the root
    local source="$1" mode="$2" target
    # Resolved as the root sees it: an absolute symlink in the root must not
    # lead the mount out of it.
    target="$root$(chroot "$root" /usr/bin/realpath -m -- "$source")"
    if [ -d "$source" ]; then
        mkdir -p -- "$target"
    else
        mkdir -p -- "$(dirname -- "$target")"
        [ -e "$target" ] || : >"$target"
    fi
    { mount --bind -- "$source" "$target" &&
        { [ "$mode" = rw ] || mount -o remount,bind,ro -- "$target"; }; } ||
        fail "mounting $source in the root" "mount failed (see above)"
}

host_apt_paths() {  # what apt-get in the root needs from the host, read-only
    printf '%s\n' /etc/resolv.conf /etc/hosts
    # How the host reaches the archive (proxies, validity of a mirror's
    # Release files, ...): its apt configuration files that set Acquire:: options.
    grep -ls 'Acquire' /etc/apt/apt.conf /etc/apt/apt.conf.d/* || true
}

make_root() {  # with the lock held exclusively
    local missing
    mapfile -t missing < <(missing_from_stamp)
    if [ -f "$stamp" ]; then
        mv "$stamp" "$stamp.packages"  # an interrupted change leaves no stamp
    else
        if [ -e "$root" ]; then
            [ -z "$(mounts_under_root)" ] ||
                fail "removing the half-made root $root" "something is mounted in it:" \
                    "$(mounts_under_root | tr '\n' ' ')"
            echo "dhatc sid-root: $root is incomplete (no stamp): removing it"
            rm -rf --one-file-system -- "$root"
        fi
        if ! command -v debootstrap >/dev/null; then
            echo "dhatc sid-root: installing debootstrap on the host"
            { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
                apt-get install -y -qq --no-install-recommends debootstrap >/dev/null; } ||
                fail "installing debootstrap on the host" "apt-get failed (see above)"
        fi
        echo "dhatc sid-root: making $root (debootstrap sid from $mirror; log: $log)"
        mkdir -p "$root"
        # (In a mount namespace of its own: what it mounts in the root while it
        # works goes away with it, even if it is killed.)
        if ! unshare --mount --propagation private -- debootstrap --variant=minbase \
            --include="$(python_packages | paste -sd,)" sid "$root" "$mirror" >"$log" 2>&1; then
            tail -n 15 "$log" >&2
            fail "debootstrap" "it could not make the root (the end of $log is above)"
        fi
        # No service starts inside the root when a package is installed.
        printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
        chmod +x "$root/usr/sbin/policy-rc.d"
        : >"$stamp.packages"
    fi
    echo "dhatc sid-root: installing in the root: ${missing[*]}"
    if ! in_root_namespace / "$(host_apt_paths)" "" bash -c \
        'apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@" && apt-get clean' \
        apt "${missing[@]}" >>"$log" 2>&1; then
        tail -n 15 "$log" >&2
        fail "apt-get install in the root" "(the end of $log is above)"
    fi
    printf 'package %s\n' "${missing[@]}" >>"$stamp.packages"
    { echo "# written last by scripts/sid-root.sh: this root is complete"
      echo "suite sid"
      echo "mirror $mirror"
      grep '^package ' "$stamp.packages" | sort -u; } >"$stamp.new"
    rm -f "$stamp.packages"
    mv "$stamp.new" "$stamp"
    echo "dhatc sid-root: $root is ready"
}

complete_root_locked() {  # leaves $lock_fd holding a shared lock on a complete root
    mkdir -p "$(dirname "$root")"
    exec {lock_fd}>>"$lock"
    take_lock -s
    if [ -n "$(missing_from_stamp)" ]; then
        take_lock -x  # (converting gives up the shared lock first: no deadlock)
        [ -z "$(missing_from_stamp)" ] || make_root
        take_lock -s
    fi
}

shared_paths() {  # what `run` mounts read-only: pip's configuration, the host's DNS
    local paths
    paths="$(python3 "$scripts_dir/pip-config-paths.py")" ||
        fail "reading pip's configuration" "scripts/pip-config-paths.py failed (see above)"
    printf '%s\n' /etc/resolv.conf /etc/hosts "$paths"
    # A git worktree keeps its repository elsewhere: git in the root needs it.
    if [ -f .git ] && command -v git >/dev/null; then
        git rev-parse --path-format=absolute --git-common-dir 2>/dev/null || true
    fi
}

case "${1:-}" in
    pythons)
        echo "${SID_PYTHONS[@]}"
        ;;
    ensure)
        [ "$root" != / ] || fail "checking DHATC_SID_ROOT" "it must not be /"
        complete_root_locked
        ;;
    run)
        shift
        [ "$#" -gt 0 ] || fail "run" "no command given (usage: $0 run CMD [ARG...])"
        [ "$root" != / ] || fail "checking DHATC_SID_ROOT" "it must not be /"
        complete_root_locked
        ro_paths="$(shared_paths)"
        in_root_namespace "$PWD" "$ro_paths" "$PWD" "$@"
        ;;
    __inside)  # (internal: PID 1 of the namespace `run` makes)
        shift
        inside "$@"
        ;;
    *)
        echo "usage: $0 pythons | ensure | run CMD [ARG...]" >&2
        exit 2
        ;;
esac
