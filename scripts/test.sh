#!/usr/bin/env bash
# The README's test command: installs everything and runs the whole test
# suite on every CPython >= 3.9 this machine has (scripts/pythons.sh), then
# on Debian's CPython 3.14 and 3.15 in a Debian sid root (scripts/sid-root.sh),
# each in a fresh virtualenv with dhatc installed by pip
# (scripts/test-python.sh), and ends with one line per version and the total
# (scripts/test-summary.py).  Arguments go to pytest.
#
#   DHATC_TEST_PYTHONS="python3.9 /path/to/python3 sid:3.14"
#                       test on these only; sid:X.Y is the sid root's CPython X.Y
#   DHATC_TEST_SID=0    leave out the sid root (quick local runs)
#   DHATC_SID_ROOT=DIR  where the root is kept (default /var/cache/dhatc/sid-root)
#
# Exits non-zero if a step failed (installing the system packages, making the
# root, setting up a version, its tests), or if no test ran; the step that
# failed says so, and the summary names it.
set -euo pipefail
cd "$(dirname "$0")/.."
trap 'echo "dhatc: interrupted" >&2; exit 130' INT
trap 'exit 143' TERM

bash scripts/install-system-deps.sh || {
    echo "dhatc: installing the system packages failed (see above)" >&2
    exit 1
}

with_sid="${DHATC_TEST_SID:-1}"
case "$with_sid" in
    0 | 1) ;;
    *) echo "dhatc: DHATC_TEST_SID must be 0 or 1, not '$with_sid'" >&2; exit 2 ;;
esac
pythons=()
if [ -n "${DHATC_TEST_PYTHONS:-}" ]; then
    read -ra pythons <<<"$DHATC_TEST_PYTHONS"
else
    found="$(bash scripts/pythons.sh)" || exit 1  # (it says why)
    mapfile -t pythons <<<"$found"
    if [ "$with_sid" = 1 ]; then
        for version in $(bash scripts/sid-root.sh pythons); do
            pythons+=("sid:$version")
        done
    fi
fi
if [ "$with_sid" = 0 ]; then
    for i in "${!pythons[@]}"; do
        case "${pythons[$i]}" in
            sid:*)
                echo "dhatc: DHATC_TEST_SID=0: leaving out ${pythons[$i]}"
                unset "pythons[$i]"
                ;;
        esac
    done
fi
if [ "${#pythons[@]}" -eq 0 ]; then
    echo "dhatc: no CPython to test with" >&2
    exit 1
fi

reports=()  # NAME|DIR|WHY, for scripts/test-summary.py
status=0
sid_root=""  # ready or failed, once made
for python in "${pythons[@]}"; do
    case "$python" in
        sid:*)
            version="${python#sid:}"
            dir=".venvs/sid-py$version"
            rm -rf "$dir"
            echo "=== CPython $version in the Debian sid root"
            if [[ ! "$version" =~ ^3\.[0-9]+$ ]]; then
                echo "dhatc: '$python' in DHATC_TEST_PYTHONS: write sid:3.14 or sid:3.15" >&2
                reports+=("$python||no such interpreter (write sid:3.14 or sid:3.15)")
                status=1
                continue
            fi
            if [ -z "$sid_root" ]; then
                if bash scripts/sid-root.sh ensure; then sid_root=ready; else sid_root=failed; fi
            fi
            if [ "$sid_root" = failed ]; then
                reports+=("$python|$dir|making the sid root failed (its error is above)")
                status=1
                continue
            fi
            bash scripts/sid-root.sh run bash scripts/test-python.sh "python$version" "$dir" "$@" ||
                status=1
            reports+=("$python|$dir|running in the sid root failed (its error is above)")
            ;;
        *)
            if ! version="$("$python" -c 'import platform; print(platform.python_version())')"; then
                echo "=== $python"
                echo "dhatc: cannot run $python" >&2
                reports+=("$python||cannot run $python")
                status=1
                continue
            fi
            echo "=== CPython $version ($python)"
            dir=".venvs/py$version"
            bash scripts/test-python.sh "$python" "$dir" "$@" || status=1
            reports+=("$python|$dir|")
            ;;
    esac
done

python3 scripts/test-summary.py "${reports[@]}" || status=1
exit "$status"
