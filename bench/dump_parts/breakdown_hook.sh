#!/bin/sh
# bench/dump.py --breakdown: runs as kdump_pre in the capture kernel, before the dump, and
# times makedumpfile variants one after another on the same /proc/vmcore (not product code).
# The variants come from `bench.v=a,b,...` on the capture kernel's command line. Each writes
# into a scratch folder on the dump disk, which is emptied and its pages dropped between runs.
mkdir -p /mnt/bench
mount -t ext4 /dev/vda /mnt/bench || { echo "BENCH: mount failed"; exit 0; }
up() { cut -d' ' -f1 /proc/uptime; }
# Busy jiffies per CPU (user+nice+system+irq+softirq).
busy() { awk '/^cpu[0-9]/ {printf "%s:%d ", $1, $2+$3+$4+$7+$8}' /proc/stat; }
run() {
    name=$1; shift
    rm -rf /mnt/bench/o; mkdir -p /mnt/bench/o
    sync; echo 3 > /proc/sys/vm/drop_caches
    echo "BENCH-BEGIN: $name"
    b0=$(busy); s=$(up)
    "$@" >/mnt/bench/o/log 2>&1
    rc=$?
    sync
    e=$(up); b1=$(busy)
    kib=$(du -sk /mnt/bench/o | cut -f1)
    echo "BENCH: $name rc=$rc secs=$(awk "BEGIN{print $e-$s}") kib=$kib busy0=$b0| busy1=$b1|"
}
V=/proc/vmcore
O=/mnt/bench/o
L="-d 31 --message-level 7"
# --num-threads: glibc dlopens libgcc_s when a thread exits (collector.sh.j2 does the same).
export LD_PRELOAD=libgcc_s.so.1
for x in $(tr ' ' '\n' </proc/cmdline | sed -n 's/^bench\.v=//p' | tr ',' ' '); do
    case $x in
    none) run "$x" makedumpfile $L $V $O/vmcore ;;
    lzo) run "$x" makedumpfile -l $L $V $O/vmcore ;;
    lzo-threads) run "$x" makedumpfile -l $L --num-threads 2 $V $O/vmcore ;;
    lzo-split) run "$x" makedumpfile -l $L --split $V $O/v1 $O/v2 ;;
    lzo-nowrite) run "$x" sh -c "makedumpfile -F -l $L $V >/dev/null" ;;
    zlib) run "$x" makedumpfile -c $L $V $O/vmcore ;;
    zlib-threads) run "$x" makedumpfile -c $L --num-threads 2 $V $O/vmcore ;;
    zlib-split) run "$x" makedumpfile -c $L --split $V $O/v1 $O/v2 ;;
    *) echo "BENCH: $x unknown" ;;
    esac
done
umount /mnt/bench
echo "BENCH: done"
exit 0
