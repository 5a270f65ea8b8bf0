#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the `slurm` tests and for trying
# `hydra/launcher=slurm` before submitting to a real cluster.
#
#   scripts/slurm-local.sh up       install (Debian: slurmctld slurmd slurm-client munge) and start it
#   scripts/slurm-local.sh status   what answers, and which of its daemons run
#   scripts/slurm-local.sh down     stop exactly the daemons `up` started (by their pid files)
#
# When a SLURM cluster already answers (`sinfo`), `up` leaves it alone. Installing and starting
# daemons needs root. One node (this host, `nproc` CPUs), one default partition `local`,
# proctrack/linuxproc and task/none (no cgroups needed), no accounting. A requeued job waits
# `cred_expire` seconds before it starts again: 5 here, 120 on a default cluster.
set -euo pipefail

STATE=${LIGHTSUITE_SLURM_STATE:-/var/lib/lightsuite-slurm}
CONF=${SLURM_CONF:-/etc/slurm/slurm.conf}
MARK="# written by lightsuite scripts/slurm-local.sh"
PACKAGES=(slurmctld slurmd slurm-client munge)

say() { echo "slurm-local: $*"; }
die() {
  echo "slurm-local: $*" >&2
  exit 1
}

answers() { timeout 10 sinfo -h -o %t >/dev/null 2>&1; }

node_state() { timeout 10 sinfo -h -N -o %t 2>/dev/null | head -n 1; }

# a pid file of ours whose process is alive and is that daemon (not a reused pid after a reboot)
running() {
  local pid
  [ -f "$STATE/$1.pid" ] || return 1
  pid=$(cat "$STATE/$1.pid")
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ]
}

need_root() {
  [ "$(id -u)" = 0 ] || die "$1 needs root: run \`sudo $0 ${ACTION}\` (or \`make slurm-${ACTION}\` as root)"
}

install_packages() {
  local missing=()
  command -v slurmctld >/dev/null || missing+=(slurmctld)
  command -v slurmd >/dev/null || missing+=(slurmd)
  command -v sbatch >/dev/null || missing+=(slurm-client)
  command -v munged >/dev/null || missing+=(munge)
  [ ${#missing[@]} = 0 ] && return
  command -v apt-get >/dev/null ||
    die "no apt-get to install ${missing[*]}: install SLURM (${PACKAGES[*]}) with this system's package manager"
  say "installing ${missing[*]} (apt-get)"
  local start=$SECONDS
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${PACKAGES[@]}"; } >"$STATE/apt.log" 2>&1 || die "apt-get install ${missing[*]} failed; see $STATE/apt.log"
  say "installed in $((SECONDS - start)) s"
}

start_munge() {
  if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    return # a munged already answers: not ours to start or stop
  fi
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge /etc/munge
  chown munge:munge /etc/munge/munge.key
  chmod 0400 /etc/munge/munge.key
  rm -f /run/munge/munged.pid
  runuser -u munge -- munged || die "munged did not start; see /var/log/munge/munged.log"
  # munged writes its pid file as user munge: keep a copy where `down` looks
  for _ in $(seq 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
  cp /run/munge/munged.pid "$STATE/munged.pid"
}

write_conf() {
  if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    die "$CONF exists and was not written by this script, but no cluster answers: start that SLURM, or move the file away"
  fi
  local host mem
  host=$(hostname -s)
  mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
  mkdir -p "$(dirname "$CONF")" "$STATE/ctld" "$STATE/d"
  cat >"$CONF" <<EOF
$MARK: a one-node cluster for tests
ClusterName=lightsuite
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# a requeued job waits cred_expire seconds before it starts again (default 120)
AuthInfo=cred_expire=5
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
SchedulerType=sched/builtin
JobRequeue=1
# seconds between SIGTERM and SIGKILL when a job is cancelled, requeued or out of time
KillWait=5
# finished jobs stay visible to squeue/scontrol this long (there is no accounting database)
MinJobAge=600
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName=$host NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

up() {
  if answers; then
    say "a SLURM cluster already answers; nothing started"
    sinfo
    return
  fi
  need_root "installing and starting SLURM"
  mkdir -p "$STATE"
  install_packages
  start_munge
  write_conf
  # -c: a test cluster starts with an empty queue (no jobs left over from an interrupted run)
  running slurmctld || slurmctld -c || die "slurmctld did not start; see $STATE/slurmctld.log"
  running slurmd || slurmd || die "slurmd did not start; see $STATE/slurmd.log"
  local state=""
  for _ in $(seq 60); do
    state=$(node_state || true)
    case "$state" in
    idle | mix | alloc) break ;;
    down* | drain* | fail*) scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true ;;
    esac
    sleep 1
  done
  case "$state" in
  idle | mix | alloc) say "up: node $(hostname -s) $state, $(nproc) CPUs, partition local (down: $0 down)" ;;
  *) die "the node is '${state:-not answering}' after 60 s; see $STATE/slurmctld.log and $STATE/slurmd.log" ;;
  esac
}

down() {
  local ours=()
  for daemon in slurmd slurmctld munged; do
    if running "$daemon"; then ours+=("$daemon"); fi
  done
  if [ ${#ours[@]} = 0 ]; then
    say "none of its daemons is running"
    return
  fi
  need_root "stopping ${ours[*]}"
  if running slurmctld && answers; then
    squeue -h -o %i 2>/dev/null | xargs -r scancel >/dev/null 2>&1 || true # no job outlives its cluster
    for _ in $(seq 30); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.5; done
  fi
  for daemon in "${ours[@]}"; do
    local pid
    pid=$(cat "$STATE/$daemon.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do running "$daemon" || break; sleep 0.1; done
    if running "$daemon"; then kill -9 "$pid" 2>/dev/null || true; fi
    rm -f "$STATE/$daemon.pid"
  done
  say "stopped ${ours[*]}"
}

status() {
  for daemon in munged slurmctld slurmd; do
    if running "$daemon"; then
      say "$daemon running (pid $(cat "$STATE/$daemon.pid"), started by this script)"
    fi
  done
  if answers; then
    sinfo
    squeue
  else
    say "no SLURM cluster answers (up: $0 up)"
    return 1
  fi
}

ACTION=${1:-}
case "$ACTION" in
up) up ;;
down) down ;;
status) status ;;
*) die "usage: $0 up|down|status" ;;
esac
