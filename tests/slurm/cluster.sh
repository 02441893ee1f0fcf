#!/usr/bin/env bash
# A single-node SLURM cluster on 127.0.0.1 for the workflow's tests (Debian's slurm-wlm and munge).
# Fake GPUs (gres.conf) let GPU-declaring jobs schedule on a CPU machine. Needs root; no systemd.
#   tests/slurm/cluster.sh start   # install what is missing, start munged, slurmctld, slurmd; wait for the node
#   tests/slurm/cluster.sh stop    # stop exactly the daemons it started, by their PID files
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RUN=/run/localslurm STATE=/var/lib/localslurm LOGD=/var/log/localslurm

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
stop() {
    for pidfile in "$RUN/slurmd.pid" "$RUN/slurmctld.pid" /run/munge/munged.pid; do
        if alive "$pidfile"; then
            pid="$(cat "$pidfile")"; kill "$pid"
            for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
    done
}
wait_for() { local n=$(($1 * 5)); shift; for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done; "$@"; }

case "${1:-}" in
stop) stop; exit 0 ;;
start) ;;
*) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac

[ "$(id -u)" = 0 ] || { echo "SLURM test cluster needs root" >&2; exit 3; }
missing=()
for pair in slurmctld:slurmctld slurmd:slurmd sbatch:slurm-client munged:munge; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair##*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } >&2 \
        || { echo "cannot install SLURM (${missing[*]}) with apt-get" >&2; exit 3; }
fi

install -d -m 0755 /etc/slurm "$RUN" "$STATE/ctld" "$STATE/d" "$STATE/fakegpu" "$LOGD"
for i in 0 1; do ln -sfn /dev/null "$STATE/fakegpu/gpu$i"; done  # gres needs device files
install -m 0644 "$HERE/gres.conf" "$HERE/cgroup.conf" "$HERE/slurm.conf" /etc/slurm/

[ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
alive /run/munge/munged.pid || runuser -u munge -- /usr/sbin/munged
wait_for 10 sh -c 'munge -n | unmunge'
alive "$RUN/slurmctld.pid" || /usr/sbin/slurmctld
wait_for 20 sh -c 'scontrol ping | grep -q UP'
alive "$RUN/slurmd.pid" || /usr/sbin/slurmd -N localhost  # the host name may not be "localhost"

resumed=0
for _ in $(seq 120); do
    state="$(sinfo -h -N -n localhost -o %T 2>/dev/null | head -1 || true)"
    case "$state" in
    idle | mixed | allocated) sinfo; exit 0 ;;
    down* | drain* | fail* | inval*)
        [ $resumed = 1 ] || { scontrol update nodename=localhost state=resume || true; resumed=1; } ;;
    esac
    sleep 0.5
done
echo "SLURM node not idle after 60 s (state '$state'); see $LOGD/" >&2
exit 1
