#!/usr/bin/env bash
# A real single-node SLURM (munged + slurmctld + slurmd on localhost) for the
# SLURM backend's tests. Node "localhost" declares ${OTWRAP_SLURM_CPUS:-16}
# CPUs; partitions "debug" (default, no time limit) and "short" (MaxTime=1).
#
#   slurm.sh start    (re)start everything, run a smoke job; writes $DIR/env last
#   slurm.sh stop     cancel all jobs, stop the daemons and leftover slurmstepd
#   slurm.sh status   exit 0 if munged, slurmctld and slurmd are alive
#
# DIR is ${OTWRAP_SERVICES_DIR:-/tmp/otwrap-services}/slurm; every state, spool,
# pid and log path is under it. Client commands need SLURM_CONF=$DIR/slurm.conf.
# Needs root (and apt-get when the packages are not installed yet).
set -euo pipefail

SCRIPT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
BASE="$(realpath -m "${OTWRAP_SERVICES_DIR:-/tmp/otwrap-services}")"
DIR="$BASE/slurm"
CONF="$DIR/slurm.conf"
CPUS="${OTWRAP_SLURM_CPUS:-16}"
CTLD_PORT="${OTWRAP_SLURMCTLD_PORT:-6817}"
SLURMD_PORT="${OTWRAP_SLURMD_PORT:-6818}"
DAEMONS=(slurmd slurmctld munged) # stop order
# Set in the daemons' environment (inherited by slurmstepd) to find leftovers.
MARKER="OTWRAP_SLURM_SERVICE=$DIR"
IDLE_DEADLINE=30
SMOKE_DEADLINE=20

log() { echo "slurm.sh: $*" >&2; }
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

# SIGKILL the given PIDs and all their descendants (stopped first, so that
# nothing forks away in between).
kill_trees() {
    (($#)) || return 0
    local -A all=()
    local p round new found
    for round in 1 2 3 4 5; do
        new=0
        mapfile -t found < <(descendants "$@" "${!all[@]}")
        for p in "$@" "${found[@]}"; do
            [[ -n "${all[$p]:-}" || "$p" == "$$" || "$p" == "$BASHPID" ]] && continue
            alive "$p" || continue
            all[$p]=1; new=1
            kill -STOP "$p" 2>/dev/null || true
        done
        ((new)) || break
    done
    for p in "${!all[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    local deadline=$((SECONDS + 5))
    for p in "${!all[@]}"; do
        while alive "$p" && ((SECONDS < deadline)); do sleep 0.05; done
    done
}

# SIGTERM, then SIGKILL (with its descendants) after 5 s.
stop_pid() {
    local pid="$1" deadline=$((SECONDS + 5))
    ours "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    while alive "$pid" && ((SECONDS < deadline)); do sleep 0.05; done
    kill_trees "$pid"
}

# Processes carrying this service's marker (slurmstepd inherit it from slurmd).
marked_pids() {
    grep -lzx "${MARKER//./\\.}" /proc/[0-9]*/environ 2>/dev/null |
        while read -r f; do f="${f#/proc/}"; echo "${f%/environ}"; done || true
}

# ------------------------------------------------------------------ install

APT_UPDATED="${OTWRAP_APT_UPDATED:-0}"
installed() {
    [[ -x /usr/sbin/slurmctld && -x /usr/sbin/slurmd && -x /usr/sbin/munged ]] &&
        command -v sbatch >/dev/null && command -v sinfo >/dev/null
}

install_packages() {
    if [[ "$(id -u)" != 0 ]]; then
        log "SLURM is not installed and installing it needs root:"
        log "  apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge"
        exit 3
    fi
    if ! command -v apt-get >/dev/null; then
        log "SLURM is not installed and there is no apt-get to install it"
        exit 3
    fi
    export DEBIAN_FRONTEND=noninteractive
    if [[ "$APT_UPDATED" != 1 ]]; then
        apt-get update -q >&2 || die "apt-get update failed"
        APT_UPDATED=1
    fi
    apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge >&2 ||
        die "apt-get install slurmctld slurmd slurm-client munge failed"
}

# -------------------------------------------------------------------- start

write_config() {
    # With SlurmdParameters=config_overrides a node declaring more than it has
    # is not drained (verified: RealMemory=99000000 comes up idle), and memory
    # is not a consumable resource with CR_Core; RealMemory is only kept
    # within the machine's memory to stay honest on very small machines.
    local mem_mb=1000 total_kb
    total_kb="$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)"
    if [[ -n "$total_kb" ]] && ((total_kb / 1024 < mem_mb)); then
        mem_mb=$((total_kb / 1024))
    fi
    cat >"$CONF" <<EOF
# otwrap test cluster (generated by $SCRIPT)
ClusterName=otwrap
SlurmctldHost=localhost
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.sock,cred_expire=5
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
SchedulerParameters=batch_sched_delay=0,sched_interval=1,bf_interval=1
EnforcePartLimits=ALL
DependencyParameters=kill_invalid_depend
TrackWCKey=yes
MailProg=/bin/true
ReturnToService=2
MaxArraySize=100001
KillWait=2
MinJobAge=600
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.log
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/slurmd-%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=short Nodes=localhost Default=NO MaxTime=1 State=UP
EOF
}

# launch NAME CMD...: start a daemon in the background, $! into $DIR/NAME.pid.
launch() {
    local name="$1"; shift
    # setsid: the daemons outlive the caller's terminal/process group; in a
    # non-interactive shell setsid execs in place, so $! is the daemon itself.
    env "$MARKER" SLURM_CONF="$CONF" setsid "$@" </dev/null >>"$DIR/log/$name.out" 2>&1 &
    echo "$!" >"$DIR/$name.pid"
}

daemons_alive() {
    local d pid
    for d in munged slurmctld slurmd; do
        pid="$(read_pid "$DIR/$d.pid")"
        # Pids this run started (see the munged wait in cmd_start).
        if ! alive "$pid"; then
            log "$d (pid ${pid:-?}) is not running"
            return 1
        fi
    done
}

show_logs() {
    local f
    for f in "$DIR/log/munged.out" "$DIR/log/slurmctld.out" "$DIR/log/slurmctld.log" \
             "$DIR/log/slurmd.out" "$DIR/log/slurmd.log"; do
        [[ -s "$f" ]] || continue
        log "tail of $f:"
        tail -n 15 "$f" >&2 || true
    done
}

fail_start() {
    log "$*"
    show_logs
    cmd_stop >/dev/null 2>&1 || true
    exit 1
}

cmd_start() {
    installed || install_packages
    [[ "$(id -u)" == 0 ]] || { log "must run as root (SlurmUser=root)"; exit 3; }

    cmd_stop
    rm -rf "$DIR"
    mkdir -p "$DIR/munge" "$DIR/state" "$DIR/spool/slurmd-localhost" "$DIR/run" "$DIR/log"
    chmod 0755 "$DIR" "$DIR/munge"
    head -c 1024 /dev/urandom >"$DIR/munge/munge.key"
    chmod 0400 "$DIR/munge/munge.key"
    write_config
    export SLURM_CONF="$CONF"

    launch munged /usr/sbin/munged -F --force \
        --socket="$DIR/munge/munge.sock" --key-file="$DIR/munge/munge.key" \
        --pid-file="$DIR/munge/munged.pid" --seed-file="$DIR/munge/munge.seed" \
        --log-file="$DIR/log/munged.log"
    local deadline=$((SECONDS + 10))
    until [[ -S "$DIR/munge/munge.sock" ]]; do
        # `alive`, not `ours`: we just started this pid, and while it execs
        # (env → setsid → munged) its cmdline can read empty for a moment.
        alive "$(read_pid "$DIR/munged.pid")" || fail_start "munged died"
        ((SECONDS < deadline)) || fail_start "munged socket did not appear in 10 s"
        sleep 0.05
    done

    launch slurmctld /usr/sbin/slurmctld -D -f "$CONF"
    launch slurmd /usr/sbin/slurmd -D -N localhost -f "$CONF"

    local state=""
    deadline=$((SECONDS + IDLE_DEADLINE))
    while true; do
        daemons_alive || fail_start "a daemon died during start-up"
        state="$(timeout 5 sinfo -h -N -n localhost -p debug -o %t 2>/dev/null || true)"
        [[ "$state" == idle ]] && break
        ((SECONDS < deadline)) ||
            fail_start "node localhost not idle after ${IDLE_DEADLINE}s (state '${state}')"
        sleep 0.2
    done

    # Smoke job: a real batch job must run and complete.
    local out id final=""
    out="$(cd "$DIR" && timeout 10 sbatch --parsable -J otwrap-smoke \
        -o "$DIR/log/smoke-%j.out" --wrap true 2>&1)" || fail_start "smoke sbatch failed: $out"
    id="${out%%;*}"
    deadline=$((SECONDS + SMOKE_DEADLINE))
    while true; do
        final="$(timeout 5 squeue -h -t all -j "$id" -o %T 2>/dev/null || true)"
        case "$final" in
            COMPLETED) break ;;
            FAILED | CANCELLED | TIMEOUT | NODE_FAIL | BOOT_FAIL | OUT_OF_MEMORY | DEADLINE)
                fail_start "smoke job $id ended $final" ;;
        esac
        daemons_alive || fail_start "a daemon died during the smoke job"
        ((SECONDS < deadline)) ||
            fail_start "smoke job $id not completed after ${SMOKE_DEADLINE}s (state '${final}')"
        sleep 0.1
    done

    cat >"$DIR/env.tmp" <<EOF
SLURM_CONF=$CONF
OTWRAP_TEST_SLURM_CPUS=$CPUS
OTWRAP_TEST_SLURM_DIR=$DIR
OTWRAP_TEST_SLURM_SCRIPT=$SCRIPT
EOF
    mv "$DIR/env.tmp" "$DIR/env"
    log "up: node localhost idle with $CPUS CPUs, smoke job $id COMPLETED ($DIR/env)"
}

# --------------------------------------------------------------------- rest

cmd_stop() {
    rm -f "$DIR/env"
    local ctld
    ctld="$(read_pid "$DIR/slurmctld.pid")"
    if [[ -f "$CONF" ]] && ours "$ctld" && command -v scancel >/dev/null; then
        export SLURM_CONF="$CONF"
        timeout 5 scancel --user=root 2>/dev/null || true
        local deadline=$((SECONDS + 10)) q
        while ((SECONDS < deadline)); do
            q="$(timeout 5 squeue -h -o %i 2>/dev/null)" || break
            [[ -z "$q" ]] && break
            sleep 0.2
        done
    fi
    local d
    for d in "${DAEMONS[@]}"; do
        stop_pid "$(read_pid "$DIR/$d.pid")"
        rm -f "$DIR/$d.pid"
    done
    # Leftover slurmstepd (they outlive slurmd) and whatever they still run.
    local left
    mapfile -t left < <(marked_pids)
    kill_trees "${left[@]}"
}

cmd_status() {
    local d pid ok=0
    for d in munged slurmctld slurmd; do
        pid="$(read_pid "$DIR/$d.pid")"
        if ours "$pid"; then
            echo "$d alive (pid $pid)"
        else
            echo "$d down"
            ok=1
        fi
    done
    [[ -f "$DIR/env" ]] || { echo "no env file ($DIR/env)"; ok=1; }
    return "$ok"
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *)
        echo "usage: $0 start|stop|status" >&2
        exit 2
        ;;
esac
