#!/bin/sh
# Measures the machine limits the storage benches are judged against, in the
# directory the benches write to (STROM_BENCH_DIR, default: the temp dir):
# raw sequential write bandwidth with fdatasync (dd), and the machine facts
# BENCHMARKS.md records beside the figures.
set -eu
dir="${STROM_BENCH_DIR:-${TMPDIR:-/tmp}}"
f="$dir/strom-dd-limit.$$"
trap 'rm -f "$f"' EXIT
echo "nproc: $(nproc)"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "memory: $(free -m | awk '/^Mem:/ {print $2 " MiB"}')"
echo "filesystem: $(df -T "$dir" | awk 'NR==2 {print $2 " on " $1}') ($dir)"
echo "dd if=/dev/zero of=$f bs=1M count=2048 conv=fdatasync"
dd if=/dev/zero of="$f" bs=1M count=2048 conv=fdatasync 2>&1 | tail -1
