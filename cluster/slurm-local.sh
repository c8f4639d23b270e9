#!/usr/bin/env bash
# A one-node SLURM on this machine, for trying the SLURM recipes and for the tests: munge,
# slurmctld and slurmd as root, state and logs under DIR, one node with this machine's CPUs
# in two partitions (`debug`, the default, and `gpu`), the node declaring one GPU as a GRES
# (there is no GPU: the scheduler only counts it). `install` installs the Debian packages
# when they are missing (as root).
#
#   sudo cluster/slurm-local.sh install               # Debian's packages, when missing
#   sudo cluster/slurm-local.sh start /tmp/slurm     # then: export SLURM_CONF=/tmp/slurm/slurm.conf
#   sbatch --wrap hostname; squeue
#   sudo cluster/slurm-local.sh stop /tmp/slurm
#
# Needs Debian's slurm-wlm and munge (apt-get install -y slurm-wlm munge).
set -euo pipefail
ACTION=${1:?start or stop}
DIR=$(realpath -m "${2:-/tmp/sarlo-slurm}")
HOST=$(hostname -s)

stop() {
    for d in slurmd slurmctld; do
        if [ -f "$DIR/$d.pid" ]; then
            kill "$(cat "$DIR/$d.pid")" 2>/dev/null || true
        fi
    done
    sleep 1
    pkill -f "slurmd -f $DIR/slurm.conf" 2>/dev/null || true
    pkill -f "slurmctld -f $DIR/slurm.conf" 2>/dev/null || true
}

if [ "$ACTION" = stop ]; then
    stop
    exit 0
fi
if [ "$ACTION" = install ]; then
    command -v slurmctld > /dev/null && command -v munged > /dev/null && exit 0
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq slurm-wlm munge > /dev/null
    exit 0
fi
[ "$ACTION" = start ] || { echo "usage: $0 install|start|stop [DIR]" >&2; exit 2; }
for tool in munged slurmctld slurmd sbatch; do
    command -v "$tool" > /dev/null || { echo "$tool not found: apt-get install -y slurm-wlm munge" >&2; exit 3; }
done
mkdir -p "$DIR/state" "$DIR/spool" /run/munge
MEM=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
# jobs are mostly waiting on each other (a client job and its workers): let the node take
# more one-core jobs than it has cores (SLURM_LOCAL_CPUS, default 4 per core)
CPUS=${SLURM_LOCAL_CPUS:-$(( $(nproc) * 4 ))}
cat > "$DIR/slurm.conf" <<EOF
ClusterName=sarlo
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
SlurmctldPort=${SLURMCTLD_PORT:-6817}
SlurmdPort=${SLURMD_PORT:-6818}
KillWait=5
OverTimeLimit=0
MinJobAge=600
SchedulerParameters=sched_interval=2
GresTypes=gpu
SlurmdParameters=config_overrides
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=ALL MaxTime=INFINITE State=UP
EOF
# the GPU as a count: SLURM wants a device file for a gpu GRES; /dev/null stands in (nothing
# binds it: TaskPlugin=task/none)
echo "NodeName=$HOST Name=gpu Count=1 File=/dev/null" > "$DIR/gres.conf"
if ! pgrep -x munged > /dev/null; then
    [ -s /etc/munge/munge.key ] || mungekey --create --keyfile /etc/munge/munge.key 2>/dev/null \
        || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    chown root:root /etc/munge/munge.key /run/munge 2>/dev/null || true
    chmod 0400 /etc/munge/munge.key
    munged --force
fi
stop
slurmctld -f "$DIR/slurm.conf"
slurmd -f "$DIR/slurm.conf"
export SLURM_CONF="$DIR/slurm.conf"
for _ in $(seq 1 60); do
    if sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
        sinfo
        exit 0
    fi
    sleep 0.5
done
echo "SLURM did not come up; logs in $DIR" >&2
tail -n 20 "$DIR/slurmctld.log" "$DIR/slurmd.log" >&2 || true
exit 1
