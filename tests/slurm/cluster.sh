#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for `make test-slurm` (CI runs it as root on a throw-away machine).
#
#   tests/slurm/cluster.sh start   install (Debian packages) if missing, configure, start; idempotent
#   tests/slurm/cluster.sh stop    stop every daemon this script started; nothing is left running
#   tests/slurm/cluster.sh env     print the environment clients need (SLURM_CONF)
#
# Real daemons, real accounting: munged, MariaDB, slurmdbd, slurmctld and slurmd on loopback. The executor
# plugin follows jobs with `sacct` (its default) and validates the account with `sacctmgr`, both of which need
# slurmdbd; `squeue` alone is its fallback only when MinJobAge is long, so accounting is what a real cluster has.
#
# Everything lives under $STATE (default /var/lib/lntune-slurm-ci). Clients find slurm.conf through a link at
# /etc/slurm/slurm.conf: SLURM_CONF alone is not enough, because the plugin's job step drops every SLURM_*
# variable before its `srun`. A slurm.conf there that is not this script's link stops the script: it never
# replaces a real cluster's configuration. The node declares the size of a GPU node (64 CPUs, 500 GB) with
# `SlurmdParameters=config_overrides`: the real profile's per-rule requests (32 CPUs, 256 GB for training) are
# then schedulable as written, while the smoke workflow's jobs use a few real cores. Partitions are named as in
# profiles/slurm (cpu, gpu); the account is `lntune_ci`.
set -euo pipefail

STATE=${LNTUNE_SLURM_STATE:-/var/lib/lntune-slurm-ci}
ACCOUNT=lntune_ci
NODE=ci-node
HOST=$(uname -n | cut -d. -f1)  # what slurmctld and slurmdbd compare with gethostname()
PACKAGES=(munge mariadb-server slurmctld slurmd slurmdbd slurm-client)
export SLURM_CONF=$STATE/etc/slurm.conf

log() { echo "[slurm-ci] $*"; }

install_packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    # Keep the packages' own services from starting on a systemd machine (they would look for the default
    # /etc/slurm/slurm.conf and fail the install): this script starts the daemons itself, on its own config.
    local policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      policy=/usr/sbin/policy-rc.d; printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"
    fi
    apt-get update -q
    local status=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" || status=$?
    if [ -n "$policy" ]; then rm -f "$policy"; fi
    return "$status"
  fi
}

link_config() {
  if [ -e /etc/slurm/slurm.conf ] && [ "$(readlink /etc/slurm/slurm.conf)" != "$SLURM_CONF" ]; then
    log "/etc/slurm/slurm.conf exists and is not this test cluster's: refusing to replace it"; exit 1
  fi
  mkdir -p /etc/slurm && ln -sfn "$SLURM_CONF" /etc/slurm/slurm.conf
}

write_config() {
  mkdir -p "$STATE"/{etc,log,run,spool/ctld,spool/d,mysql}
  cat >"$STATE/etc/slurm.conf" <<EOF
ClusterName=lntune-ci
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=600
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStorageEnforce=associations
# The plugin writes rule and wildcards into --comment; keep it in accounting so sacct shows which job is which.
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/none
NodeName=$NODE NodeHostname=$HOST NodeAddr=127.0.0.1 CPUs=64 RealMemory=512000 State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE MaxTime=INFINITE State=UP
EOF
  cat >"$STATE/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=$HOST
DbdAddr=127.0.0.1
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3307
StorageUser=slurm
StoragePass=lntune-ci
StorageLoc=slurm_acct_db
PidFile=$STATE/run/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
EOF
  chmod 600 "$STATE/etc/slurmdbd.conf"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local seconds=$1 what=$2; shift 2
  for _ in $(seq "$seconds"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  log "$what did not come up in ${seconds}s"; tail -n 30 "$STATE"/log/*.log 2>/dev/null || true
  return 1
}

start_mariadb() {
  # Its own data directory and port, so a MariaDB the machine already runs is left alone.
  if [ ! -d "$STATE/mysql/mysql" ]; then
    mariadb-install-db --user=root --datadir="$STATE/mysql" --auth-root-authentication-method=socket >/dev/null
  fi
  if ! mariadb-admin --socket="$STATE/run/mysql.sock" ping >/dev/null 2>&1; then
    # Detached, with its output in the log: a daemon holding this script's stdout would hang a caller's pipe.
    setsid mariadbd --user=root --datadir="$STATE/mysql" --socket="$STATE/run/mysql.sock" --port=3307 \
      --bind-address=127.0.0.1 --pid-file="$STATE/run/mariadb.pid" --log-error="$STATE/log/mariadb.log" \
      </dev/null >>"$STATE/log/mariadb.log" 2>&1 &
    wait_for 60 MariaDB mariadb-admin --socket="$STATE/run/mysql.sock" ping
  fi
  mariadb --socket="$STATE/run/mysql.sock" -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'lntune-ci';
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'lntune-ci';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
    FLUSH PRIVILEGES;"
}

running() { local pid; pid=$(cat "$1" 2>/dev/null) && kill -0 "$pid" 2>/dev/null; }

start() {
  install_packages
  write_config
  link_config
  mkdir -p /run/munge && chown munge:munge /run/munge
  if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged
    wait_for 20 munged sh -c 'munge -n | unmunge'
  fi
  start_mariadb
  running "$STATE/run/slurmdbd.pid" || slurmdbd
  wait_for 60 slurmdbd sacctmgr -i list cluster
  sacctmgr -i add cluster lntune-ci >/dev/null 2>&1 || true
  running "$STATE/run/slurmctld.pid" || slurmctld
  wait_for 60 slurmctld scontrol ping
  running "$STATE/run/slurmd.pid" || slurmd -N "$NODE"
  sacctmgr -i add account "$ACCOUNT" Description="lntune CI" Organization=lntune >/dev/null 2>&1 || true
  sacctmgr -i add user "$(id -un)" Account="$ACCOUNT" DefaultAccount="$ACCOUNT" >/dev/null 2>&1 || true
  wait_for 60 "node $NODE" sh -c "sinfo -h -n $NODE -o %t | grep -Eq '^(idle|mix|alloc)'"
  scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true
  log "up: $(sinfo -h -o '%P %a %D %t' | tr '\n' ';') account $ACCOUNT; SLURM_CONF=$SLURM_CONF"
}

stop() {
  [ -f "$SLURM_CONF" ] || { log "nothing to stop (no $SLURM_CONF)"; return 0; }
  scancel --user="$(id -un)" >/dev/null 2>&1 || true
  for daemon in slurmd slurmctld slurmdbd mariadb; do
    if running "$STATE/run/$daemon.pid"; then
      kill "$(cat "$STATE/run/$daemon.pid")"
      for _ in $(seq 30); do running "$STATE/run/$daemon.pid" || break; sleep 1; done
      running "$STATE/run/$daemon.pid" && kill -9 "$(cat "$STATE/run/$daemon.pid")" 2>/dev/null
    fi
    rm -f "$STATE/run/$daemon.pid"
  done
  pkill -u munge -x munged 2>/dev/null || true
  [ "$(readlink /etc/slurm/slurm.conf)" = "$SLURM_CONF" ] && rm -f /etc/slurm/slurm.conf
  log "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) echo "SLURM_CONF=$SLURM_CONF" ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
