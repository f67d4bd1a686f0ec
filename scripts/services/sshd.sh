#!/usr/bin/env bash
# Real sshd "hosts" on loopback for the SSH backend's tests: three instances on
# 127.0.0.2, 127.0.0.3 and 127.0.0.4 (port ${OTWRAP_SSH_PORT:-2222}), root login
# with a generated key only.
#
#   sshd.sh start            (re)start all instances; writes $DIR/env last
#   sshd.sh stop             kill all instances and everything they run
#   sshd.sh kill-host ADDR   SIGKILL one instance and everything it runs
#   sshd.sh start-host ADDR  start that instance again, wait for logins
#   sshd.sh status           list instances; exit 0 if all are alive
#
# DIR is ${OTWRAP_SERVICES_DIR:-/tmp/otwrap-services}/ssh. Needs root (and
# apt-get when openssh-server is not installed yet).
set -euo pipefail

SCRIPT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
BASE="$(realpath -m "${OTWRAP_SERVICES_DIR:-/tmp/otwrap-services}")"
DIR="$BASE/ssh"
PORT="${OTWRAP_SSH_PORT:-2222}"
ADDRS=(127.0.0.2 127.0.0.3 127.0.0.4)
SSHD=/usr/sbin/sshd
LOGIN_DEADLINE=10

log() { echo "sshd.sh: $*" >&2; }
die() { log "$*"; exit 1; }

# ---------------------------------------------------------------- processes

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

# PIDs never to kill: this shell and its ancestors (the script may be run
# through one of the instances it kills).
protected_pids() {
    local pid="$$" stat
    while [[ -n "$pid" && "$pid" != 0 ]]; do
        echo "$pid"
        { read -r stat <"/proc/$pid/stat"; } 2>/dev/null || break
        stat="${stat##*) }"
        pid="$(echo "$stat" | cut -d' ' -f2)"
    done
    echo "$BASHPID"
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

# Processes started through the instance on ADDR:PORT whose parent chain was
# cut (daemonized remote commands): sshd puts SSH_CONNECTION="cip cport ADDR
# PORT" in the environment of every session.
orphans_of() {
    local addr="$1" port="$2" f
    grep -lzx "SSH_CONNECTION=[^ ]* [^ ]* ${addr//./\\.} $port" /proc/[0-9]*/environ 2>/dev/null |
        while read -r f; do f="${f#/proc/}"; echo "${f%/environ}"; done || true
}

# Stop (SIGSTOP) the instance's whole tree until no new process appears, then
# SIGKILL all of it, so nothing forks away in between.
kill_instance() {
    local addr="$1" pidfile="$DIR/$1.pid" pid port
    pid="$(read_pid "$pidfile")"
    port="$(instance_port "$addr")"
    local -A protect=()
    local p
    for p in $(protected_pids); do protect[$p]=1; done
    local -A all=()
    local round new
    for round in 1 2 3 4 5 6 7 8 9 10; do
        new=0
        local roots=()
        if ours "$pid"; then roots+=("$pid"); fi
        for p in "${!all[@]}"; do roots+=("$p"); done
        local found=()
        if ((${#roots[@]})); then
            mapfile -t found < <(descendants "${roots[@]}")
        fi
        mapfile -t -O "${#found[@]}" found < <(orphans_of "$addr" "$port")
        for p in "${roots[@]}" "${found[@]}"; do
            [[ -n "${protect[$p]:-}" || -n "${all[$p]:-}" ]] && continue
            alive "$p" || continue
            all[$p]=1; new=1
            kill -STOP "$p" 2>/dev/null || true
        done
        ((new)) || break
    done
    # Root's ~/.bashrc on this image runs `pyenv rehash`, which holds a lock
    # file in the (shared) home directory; SIGKILLed mid-rehash, that lock
    # stays and makes every later login on every "host" wait 60 s. Those get
    # SIGTERM instead (after the rest is dead), so their EXIT trap releases it.
    local gentle=() cmd
    for p in "${!all[@]}"; do
        cmd="$(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline")" || cmd=""
        if [[ "$cmd" == *pyenv-rehash* ]]; then
            gentle+=("$p")
        else
            kill -KILL "$p" 2>/dev/null || true
        fi
    done
    local deadline=$((SECONDS + 2))
    if ((${#gentle[@]})); then
        kill -TERM "${gentle[@]}" 2>/dev/null || true
        kill -CONT "${gentle[@]}" 2>/dev/null || true
        for p in "${gentle[@]}"; do
            while alive "$p" && ((SECONDS < deadline)); do sleep 0.05; done
            kill -KILL "$p" 2>/dev/null || true
        done
    fi
    # Wait (briefly) until they are gone (or zombies).
    deadline=$((SECONDS + 5))
    for p in "${!all[@]}"; do
        while alive "$p" && ((SECONDS < deadline)); do sleep 0.05; done
    done
    rm -f "$pidfile"
}

instance_port() {
    local cfg="$DIR/$1.sshd_config"
    if [[ -f "$cfg" ]]; then
        awk '$1 == "Port" { print $2; exit }' "$cfg"
    else
        echo "$PORT"
    fi
}

# ------------------------------------------------------------------ install

APT_UPDATED="${OTWRAP_APT_UPDATED:-0}"
install_packages() {
    if [[ "$(id -u)" != 0 ]]; then
        log "$SSHD is missing and installing openssh-server needs root:"
        log "  apt-get install -y --no-install-recommends openssh-server openssh-client"
        exit 3
    fi
    if ! command -v apt-get >/dev/null; then
        log "$SSHD is missing and there is no apt-get to install openssh-server"
        exit 3
    fi
    export DEBIAN_FRONTEND=noninteractive
    if [[ "$APT_UPDATED" != 1 ]]; then
        apt-get update -q >&2 || die "apt-get update failed"
        APT_UPDATED=1
    fi
    apt-get install -y -q --no-install-recommends openssh-server openssh-client >&2 ||
        die "apt-get install openssh-server openssh-client failed"
}

# -------------------------------------------------------------------- start

write_config() {
    local addr="$1"
    cat >"$DIR/$addr.sshd_config" <<EOF
# otwrap test host $addr (generated by $SCRIPT)
ListenAddress $addr
Port $PORT
HostKey $DIR/$addr.host_ed25519
PidFile $DIR/run/$addr.sshd.pid
AuthorizedKeysFile $DIR/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
MaxStartups 100:30:200
MaxSessions 100
PrintMotd no
PrintLastLog no
X11Forwarding no
Subsystem sftp internal-sftp
EOF
    mkdir -p /run/sshd
    "$SSHD" -t -f "$DIR/$addr.sshd_config" || die "invalid config $DIR/$addr.sshd_config"
}

# ssh_login ADDR SECONDS: log in to ADDR and run `true`, within SECONDS.
ssh_login() {
    local addr="$1" secs="$2" port
    port="$(instance_port "$addr")"
    timeout "$secs" ssh -F none -i "$DIR/client_ed25519" -o IdentitiesOnly=yes -o BatchMode=yes \
        -o UserKnownHostsFile="$DIR/known_hosts" -o GlobalKnownHostsFile=/dev/null \
        -o StrictHostKeyChecking=yes -o ConnectTimeout=2 -o LogLevel=ERROR \
        -p "$port" "root@$addr" true </dev/null
}

launch() {
    local addr="$1"
    [[ -f "$DIR/$addr.sshd_config" ]] || die "no config for $addr; run: $SCRIPT start"
    mkdir -p /run/sshd "$DIR/run"
    # setsid: the daemons outlive the caller's terminal/process group; in a
    # non-interactive shell setsid execs in place, so $! is sshd itself.
    setsid "$SSHD" -D -e -f "$DIR/$addr.sshd_config" </dev/null >>"$DIR/$addr.log" 2>&1 &
    echo "$!" >"$DIR/$addr.pid"
}

wait_login() {
    local addr="$1" pid deadline=$((SECONDS + LOGIN_DEADLINE)) err=""
    pid="$(read_pid "$DIR/$addr.pid")"
    while true; do
        # `alive`, not `ours`: this run just started the pid, and while it
        # execs its cmdline can read empty for a moment.
        if ! alive "$pid"; then
            log "sshd on $addr (pid $pid) died; tail of $DIR/$addr.log:"
            tail -n 20 "$DIR/$addr.log" >&2 || true
            return 1
        fi
        if err="$(ssh_login "$addr" "$((deadline - SECONDS + 1))" 2>&1)"; then
            return 0
        fi
        if ((SECONDS >= deadline)); then
            log "sshd on $addr does not accept logins after ${LOGIN_DEADLINE}s: ${err:-timed out}"
            log "(a login runs root's shell start-up files; if they hang, e.g. on a stale"
            log " lock such as ~/.pyenv/shims/.pyenv-shim, every login waits for them)"
            log "tail of $DIR/$addr.log:"
            tail -n 20 "$DIR/$addr.log" >&2 || true
            return 1
        fi
        sleep 0.1
    done
}

cmd_start() {
    [[ -x "$SSHD" ]] || install_packages
    command -v ssh >/dev/null && command -v ssh-keygen >/dev/null || install_packages
    [[ "$(id -u)" == 0 ]] || { log "must run as root (the tests log in as root)"; exit 3; }

    cmd_stop
    rm -rf "$DIR"
    mkdir -p "$DIR/run"
    chmod 0755 "$DIR"

    ssh-keygen -q -t ed25519 -N '' -C otwrap-test-client -f "$DIR/client_ed25519"
    ssh-keygen -q -t ed25519 -N '' -C otwrap-test-wrong -f "$DIR/wrong_ed25519"
    cp "$DIR/client_ed25519.pub" "$DIR/authorized_keys"
    : >"$DIR/known_hosts"
    local addr type key
    for addr in "${ADDRS[@]}"; do
        ssh-keygen -q -t ed25519 -N '' -C "otwrap-host-$addr" -f "$DIR/$addr.host_ed25519"
        read -r type key _ <"$DIR/$addr.host_ed25519.pub"
        echo "[$addr]:$PORT $type $key" >>"$DIR/known_hosts"
        write_config "$addr"
    done
    for addr in "${ADDRS[@]}"; do launch "$addr"; done
    local failed=0
    for addr in "${ADDRS[@]}"; do wait_login "$addr" || failed=1; done
    if ((failed)); then
        cmd_stop
        die "start failed"
    fi

    local hosts
    hosts="$(IFS=,; echo "${ADDRS[*]}")"
    cat >"$DIR/env.tmp" <<EOF
OTWRAP_TEST_SSH_USER=root
OTWRAP_TEST_SSH_PORT=$PORT
OTWRAP_TEST_SSH_HOSTS=$hosts
OTWRAP_TEST_SSH_KEY=$DIR/client_ed25519
OTWRAP_TEST_SSH_WRONG_KEY=$DIR/wrong_ed25519
OTWRAP_TEST_SSH_KNOWN_HOSTS=$DIR/known_hosts
OTWRAP_TEST_SSH_SCRIPT=$SCRIPT
EOF
    mv "$DIR/env.tmp" "$DIR/env"
    log "up: ${ADDRS[*]} port $PORT ($DIR/env)"
}

# --------------------------------------------------------------------- rest

cmd_stop() {
    local addr
    for addr in "${ADDRS[@]}"; do kill_instance "$addr"; done
    rm -f "$DIR/env"
}

check_addr() {
    local addr="${1:-}" a
    for a in "${ADDRS[@]}"; do [[ "$a" == "$addr" ]] && return 0; done
    die "unknown host '$addr' (one of: ${ADDRS[*]})"
}

cmd_kill_host() {
    check_addr "${1:-}"
    kill_instance "$1"
}

cmd_start_host() {
    check_addr "${1:-}"
    [[ -f "$DIR/$1.sshd_config" ]] || die "not provisioned; run: $SCRIPT start"
    kill_instance "$1"
    launch "$1"
    wait_login "$1" || die "start-host $1 failed"
}

cmd_status() {
    local addr pid ok=0
    for addr in "${ADDRS[@]}"; do
        pid="$(read_pid "$DIR/$addr.pid")"
        if ours "$pid"; then
            echo "$addr:$(instance_port "$addr") alive (pid $pid)"
        else
            echo "$addr:$(instance_port "$addr") down"
            ok=1
        fi
    done
    [[ -f "$DIR/env" ]] || { echo "no env file ($DIR/env)"; ok=1; }
    return "$ok"
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    kill-host) cmd_kill_host "${2:-}" ;;
    start-host) cmd_start_host "${2:-}" ;;
    status) cmd_status ;;
    *)
        echo "usage: $0 start|stop|status|kill-host ADDR|start-host ADDR" >&2
        exit 2
        ;;
esac
