#!/usr/bin/env bash
# A real single-node Slurm for tests and CI (Debian's slurm-wlm; no systemd, no munge).
#
#   slurm/dev-cluster.sh up      # install if needed, write the config, start slurmctld + slurmd
#   slurm/dev-cluster.sh env     # print the exports a shell needs: SLURM_CONF and the sacct stand-in
#   slurm/dev-cluster.sh status  # sinfo
#   slurm/dev-cluster.sh down    # stop the daemons by PID, remove the state directory
#
# Everything lives under $HPCARS_SLURM_DIR (default /tmp/hpcars-slurm): config,
# state, spool, logs, pid files. The node advertises HPCARS_SLURM_CPUS CPUs (default
# 16, via SlurmdParameters=config_overrides) so several small MPI jobs can share this
# 2-core machine, as oversubscribed mpirun does. Auth is auth/none (a private,
# loopback-only cluster). There is no accounting daemon, so `sacct` is replaced by a
# stand-in that answers submitit's query from `squeue -t all` (jobs stay visible for
# MinJobAge=600 s). Requeue is made fast with a short credential lifetime.
set -euo pipefail

dir=${HPCARS_SLURM_DIR:-/tmp/hpcars-slurm}
cpus=${HPCARS_SLURM_CPUS:-16}
conf=$dir/etc/slurm.conf

need_install() { ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null; }

install() {
  if need_install; then
    if [ "$(id -u)" != 0 ]; then echo "dev-cluster: slurm-wlm is missing and installing needs root" >&2; exit 1; fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client >/dev/null
  fi
}

write_config() {
  local host mem first
  host=$(hostname -s)
  mem=$(awk '/MemTotal/ {print int($2 / 1024 / 2)}' /proc/meminfo)  # advertise half the memory
  # job ids continue from the clock, not from 1, on every fresh start: MPICH names its
  # shared-memory files after the job step, and files left by killed ranks under a reused
  # id make the next step with that id fail in MPI_Init ("Out of memory")
  first=$(( $(date +%s) / 10 % 50000000 + 1000 ))
  mkdir -p "$dir"/{etc,state,spool,log,run,bin}
  cat >"$conf" <<EOF
ClusterName=hpcars-dev
FirstJobId=$first
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/none
CredType=cred/none
AuthInfo=cred_expire=5
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
SchedulerParameters=bf_interval=1,sched_interval=2
MpiDefault=none
ReturnToService=2
MinJobAge=600
KillWait=5
InactiveLimit=0
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
  cat >"$dir/bin/sacct" <<'EOF'
#!/usr/bin/env bash
# sacct stand-in for a cluster without accounting: answers "sacct -o JobID,State,NodeList
# --parsable2 -j ID ..." (submitit's query) from squeue, which keeps finished jobs for MinJobAge.
ids=()
while [ $# -gt 0 ]; do case "$1" in -j) ids+=("$2"); shift 2 ;; *) shift ;; esac; done
echo "JobID|State|NodeList"
for id in "${ids[@]}"; do squeue -h -t all -j "$id" -o "%i|%T|%N" 2>/dev/null || true; done
EOF
  chmod +x "$dir/bin/sacct"
}

print_env() {
  echo "export SLURM_CONF=$conf"
  echo "export PATH=$dir/bin:\$PATH"
}

up() {
  install
  if [ -f "$dir/run/slurmctld.pid" ] && kill -0 "$(cat "$dir/run/slurmctld.pid")" 2>/dev/null; then
    echo "dev-cluster: already up ($dir)"; print_env; return
  fi
  rm -rf "$dir"
  write_config
  export SLURM_CONF=$conf
  slurmctld -D -f "$conf" >"$dir/log/slurmctld.out" 2>&1 &
  echo $! >"$dir/run/slurmctld.pid"
  slurmd -D -f "$conf" >"$dir/log/slurmd.out" 2>&1 &
  echo $! >"$dir/run/slurmd.pid"
  for _ in $(seq 1 60); do
    if sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
      echo "dev-cluster: up ($dir)"; print_env; return
    fi
    sleep 0.5
  done
  echo "dev-cluster: the node did not become idle; logs in $dir/log" >&2
  tail -5 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
  exit 1
}

down() {
  for daemon in slurmd slurmctld; do
    pidfile=$dir/run/$daemon.pid
    if [ -f "$pidfile" ]; then
      kill "$(cat "$pidfile")" 2>/dev/null || true
    fi
  done
  sleep 1
  for daemon in slurmd slurmctld; do
    pidfile=$dir/run/$daemon.pid
    [ -f "$pidfile" ] && kill -9 "$(cat "$pidfile")" 2>/dev/null || true
  done
  rm -rf "$dir"
  echo "dev-cluster: down"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  env) print_env ;;
  status) SLURM_CONF=$conf sinfo ;;
  *) echo "usage: $0 up|down|env|status" >&2; exit 2 ;;
esac
