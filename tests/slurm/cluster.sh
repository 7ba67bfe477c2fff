#!/usr/bin/env bash
# A real SLURM on this one machine, everything under one folder, for the job-script tests.
#   tests/slurm/cluster.sh up DIR [NODES]   start munged, slurmctld and NODES slurmd (emulated nodes n1..nN, each
#                                           with 2 fake GPUs); writes DIR/env.sh to source (SLURM_CONF, PATH)
#   tests/slurm/cluster.sh down DIR         stop everything it started, by pid file
# Needs root (slurmd), slurm-wlm and munge (installs them if missing). See ../shared/platform-notes.md.
set -euo pipefail

cmd=${1:?usage: cluster.sh up|down DIR [NODES]}
dir=$(readlink -f "${2:?usage: cluster.sh up|down DIR [NODES]}")
nodes=${3:-1}

stop_pidfile() {
  local f=$1
  [ -f "$f" ] || return 0
  local pid
  pid=$(cat "$f" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

if [ "$cmd" = down ]; then
  for f in "$dir"/slurmd.*.pid; do stop_pidfile "$f"; done
  stop_pidfile "$dir/slurmctld.pid"
  stop_pidfile "$dir/munged.pid"
  exit 0
fi

[ "$cmd" = up ] || { echo "cluster.sh: unknown command $cmd" >&2; exit 2; }
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

mkdir -p "$dir"/{munge,state,spool,tmp,dev}
chmod 0755 "$dir/munge"
# munge: a fresh key and a private socket.
head -c 1024 /dev/urandom > "$dir/munge/munge.key"
chmod 0600 "$dir/munge/munge.key"
munged --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" --pid-file="$dir/munged.pid" \
  --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed" --force </dev/null >/dev/null 2>&1

# Free ports for slurmctld and each slurmd.
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ctld_port=$(port)
read -r cpus sockets cores threads mem < <(slurmd -C | awk -F'[ =]' '/NodeName/{for(i=1;i<=NF;i++){if($i=="CPUs")c=$(i+1);if($i=="SocketsPerBoard")s=$(i+1);if($i=="CoresPerSocket")k=$(i+1);if($i=="ThreadsPerCore")t=$(i+1);if($i=="RealMemory")m=$(i+1)}} END{print c,s,k,t,m}')
mem=$((mem * 8 / 10 / nodes))
host=$(hostname)

# Fake GPUs: character devices SLURM can hand out (it sets CUDA_VISIBLE_DEVICES).
for g in 0 1; do [ -e "$dir/dev/nvidia$g" ] || mknod "$dir/dev/nvidia$g" c 1 3; done

conf=$dir/slurm.conf
cat > "$conf" <<CONF
ClusterName=xfertest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmUser=root
AuthType=auth/munge
CryptoType=crypto/munge
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=10
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.%n.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
MailProg=/bin/true
MinJobAge=4
EnforcePartLimits=ALL
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.txt
GresTypes=gpu
KillWait=15
InactiveLimit=0
TmpFS=$dir/tmp
DebugFlags=NO_CONF_HASH
CONF
gres=$dir/gres.conf
: > "$gres"
names=()
for i in $(seq "$nodes"); do
  n=n$i
  names+=("$n")
  p=$(port)
  mkdir -p "$dir/spool/$n"
  echo "NodeName=$n NodeHostname=$host NodeAddr=127.0.0.1 Port=$p CPUs=$cpus Boards=1 SocketsPerBoard=$sockets CoresPerSocket=$cores ThreadsPerCore=$threads RealMemory=$mem Gres=gpu:2 State=UNKNOWN" >> "$conf"
  echo "NodeName=$n Name=gpu File=$dir/dev/nvidia[0-1]" >> "$gres"
done
node_list=$(IFS=,; echo "${names[*]}")
echo "PartitionName=debug Nodes=$node_list Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES" >> "$conf"

cat > "$dir/env.sh" <<ENV
export SLURM_CONF=$conf
ENV
export SLURM_CONF=$conf
slurmctld -f "$conf" </dev/null >/dev/null 2>&1
# Each emulated node reads its own copy of the configuration, differing only in TmpFS: the PMIx plugin keeps
# per-step folders there, and two nodes on one host would collide in a shared one.
for n in "${names[@]}"; do
  mkdir -p "$dir/tmp/$n"
  sed "s|^TmpFS=.*|TmpFS=$dir/tmp/$n|" "$conf" > "$conf.$n"
  slurmd -f "$conf.$n" -N "$n" </dev/null >/dev/null 2>&1
done
# Ready when every node is idle.
for _ in $(seq 100); do
  idle=$(sinfo -h -N -o '%t' 2>/dev/null | grep -c idle || true)
  [ "$idle" -ge "$nodes" ] && exit 0
  sleep 0.2
done
echo "cluster.sh: nodes did not become idle; see $dir/slurmctld.log and $dir/slurmd.*.log" >&2
sinfo -N >&2 || true
exit 1
