# Shared by sshd.sh and slurm.sh (sourced after they set DIR, log and die):
# process checks by pid and by state directory, process trees, and the apt
# install both services use.

# True if PID is a live (not zombie) process.
alive() {
    local pid="$1" stat
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    { read -r stat <"/proc/$pid/stat"; } 2>/dev/null || return 1
    stat="${stat##*) }"
    [[ "${stat:0:1}" != Z ]]
}

read_pid() { cat "$1" 2>/dev/null || true; }

# True if PID is alive and one of this service's processes (its command line
# names the state directory), so that a stale pid file never hits another
# process.
ours() {
    local cmd
    alive "$1" || return 1
    cmd="$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline")" || return 1
    [[ "$cmd" == *"$DIR/"* ]]
}

# All descendants of the given PIDs (through the ppid field of /proc/*/stat).
descendants() {
    local -A children=()
    local f stat pid ppid rest
    for f in /proc/[0-9]*/stat; do
        { read -r stat <"$f"; } 2>/dev/null || continue
        pid="${f#/proc/}"; pid="${pid%/stat}"
        rest="${stat##*) }"
        read -r _ ppid _ <<<"$rest"
        children[$ppid]+=" $pid"
    done
    local queue=("$@") p c
    while ((${#queue[@]})); do
        p="${queue[0]}"; queue=("${queue[@]:1}")
        for c in ${children[$p]:-}; do
            echo "$c"; queue+=("$c")
        done
    done
}

# apt_install WHAT PACKAGE...: installs the packages (apt-get update once per
# run, or not at all with OTWRAP_TEST_APT_UPDATED=1); exits 3 with the command to
# run when that needs root or apt-get is missing.
APT_UPDATED="${OTWRAP_TEST_APT_UPDATED:-0}"
apt_install() {
    local what="$1"; shift
    if [[ "$(id -u)" != 0 ]]; then
        log "$what is not installed and installing it needs root:"
        log "  apt-get install -y --no-install-recommends $*"
        exit 3
    fi
    if ! command -v apt-get >/dev/null; then
        log "$what is not installed and there is no apt-get to install it"
        exit 3
    fi
    export DEBIAN_FRONTEND=noninteractive
    if [[ "$APT_UPDATED" != 1 ]]; then
        apt-get update -q >&2 || die "apt-get update failed"
        APT_UPDATED=1
    fi
    apt-get install -y -q --no-install-recommends "$@" >&2 ||
        die "apt-get install $* failed"
}
