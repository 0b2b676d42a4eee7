#!/usr/bin/env bash
# make bench: Ringtail side by side with franz-go's kfake (in memory, and persisted with
# SyncWrites), each started as its own process on 127.0.0.1, running the seed, throughput and
# open-loop workloads. Prints one comparison table and writes bench/results/<date>-<commit>.json
# and plots. BENCH_DURATION (e.g. 30s) lengthens each measured run (default 10s, whole run < 5 min);
# BENCH_RATE sets the open-loop rate; BENCH_BROKERS / BENCH_WORKLOADS pick a subset.
# BENCH_BASE=path/to/an/earlier/ringtail adds that build as broker ringtail-base, run right
# after ringtail on every workload, so a change is compared with its base in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
mkdir -p bin bench/results
# (Re)build everything so the results belong to the commit they are labelled with; go build is
# incremental, so after `make build` this costs little.
ldflags="-X main.version=$(git describe --always --dirty 2>/dev/null || echo dev)"
$GO build -o bin/kfake-peer ./cmd/kfake-peer
$GO build -ldflags "$ldflags" -o bin/ringtail-perf ./cmd/ringtail-perf
if ! $GO build -ldflags "$ldflags" -o bin/ringtail ./cmd/ringtail; then
	echo "bench: cannot build bin/ringtail; its runs will be reported as failed" >&2
	rm -f bin/ringtail
fi
# The builds leave tens of MiB of dirty pages; written back during the first measured run they
# slowed whichever broker ran first by 5-10% (seen with BENCH_BASE in both orders).
sync
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then commit="$commit-dirty"; fi
status=0
brokers=${BENCH_BROKERS:-ringtail,kfake-mem,kfake-sync}
base=()
if [ -n "${BENCH_BASE:-}" ]; then
	base=(--ringtail-base "$BENCH_BASE")
	[ -n "${BENCH_BROKERS:-}" ] || brokers=ringtail,ringtail-base,kfake-mem,kfake-sync
fi
bin/ringtail-perf bench \
	--ringtail bin/ringtail --kfake bin/kfake-peer "${base[@]}" \
	--duration "${BENCH_DURATION:-10s}" --rate "${BENCH_RATE:-20000}" \
	--brokers "$brokers" \
	--workloads "${BENCH_WORKLOADS:-seed,throughput,open-loop,lone}" \
	--out bench/results --commit "$commit" || status=$?

# The storage layer alone: the WAL through io_uring and through the portable writer, in one run,
# for 256 B, 4 KiB and 64 KiB appends at 1, 16 and 128 concurrent appenders, next to the raw
# 4 KiB write+fdatasync floor. BENCH_STORAGE=0 skips it.
if [ "${BENCH_STORAGE:-1}" != 0 ]; then
	out="bench/results/$(date -u +%Y-%m-%d)-$commit-storage.txt"
	echo
	echo "== storage: WAL io_uring vs portable (go test -bench), also in $out =="
	$GO test -run '^$' -bench '^(BenchmarkWAL|BenchmarkRawWriteSync4K)$' -benchtime "${BENCH_STORAGE_TIME:-1s}" ./wal/ | tee "$out" || status=1
fi
exit $status
