#!/usr/bin/env bash
# make bench: Ringtail side by side with franz-go's kfake (in memory; in memory with one raw sync
# inside each Produce request, on lone only; and persisted with SyncWrites), each started as its own process on 127.0.0.1, running the seed, seed-pinned (the
# broker on one CPU, the client on the others), throughput, open-loop, lone, txn (transactions
# of 100 records) and consume (a full topic read from the start) workloads, and seed against a
# cluster of three Ringtail brokers (RF 3, min.insync.replicas=2). Prints one comparison table and writes bench/results/<date>-<commit>.json
# and plots. BENCH_DURATION (e.g. 30s) lengthens each measured run (default 10s, whole run ~20 min);
# BENCH_RATE sets the open-loop rate; BENCH_BROKERS / BENCH_WORKLOADS pick a subset.
# BENCH_RECOVERY_GIB sets the recovery step's log size (BENCH_RECOVERY=0 skips it).
# BENCH_BASE=path/to/an/earlier/ringtail adds that build as broker ringtail-base, run right
# after ringtail on every workload, so a change is compared with its base in one run.
# BENCH_CLUSTER=0 leaves the cluster out; BENCH_CLUSTER=only runs seed on ringtail, the cluster
# and kfake in memory and nothing else (the cluster's ratios need the single broker's figure
# from the same run); BENCH_CLUSTER_PROFILE=1 saves a CPU profile of one cluster node.
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
brokers=${BENCH_BROKERS:-ringtail,ringtail-cluster,kfake-mem,kfake-mem-sync,kfake-sync}
workloads=${BENCH_WORKLOADS:-seed,seed-pinned,throughput,open-loop,lone,txn,consume}
base=()
if [ -n "${BENCH_BASE:-}" ]; then
	base=(--ringtail-base "$BENCH_BASE")
	[ -n "${BENCH_BROKERS:-}" ] || brokers=ringtail,ringtail-base,ringtail-cluster,kfake-mem,kfake-mem-sync,kfake-sync
fi
storage=${BENCH_STORAGE:-1}
recovery=${BENCH_RECOVERY:-1}
case "${BENCH_CLUSTER:-1}" in
0) brokers=$(echo ",$brokers," | sed 's/,ringtail-cluster,/,/g; s/^,//; s/,$//') ;;
only)
	[ -n "${BENCH_BROKERS:-}" ] || brokers=ringtail,ringtail-cluster,kfake-mem
	[ -n "${BENCH_WORKLOADS:-}" ] || workloads=seed
	storage=${BENCH_STORAGE:-0}
	recovery=${BENCH_RECOVERY:-0}
	;;
1) ;;
*) echo "bench: BENCH_CLUSTER must be 1, 0 or only" >&2; exit 2 ;;
esac
profile=()
[ "${BENCH_CLUSTER_PROFILE:-0}" = 0 ] || profile=(--profile-cluster)

# Every broker the bench starts is stopped by it, even when a run fails. Should ringtail-perf
# itself die without stopping them (SIGKILL, a panic), the ids it recorded in the pid file are
# stopped here, each only if it still runs one of the binaries given to the bench (an id may
# have been reused). The brokers' data directories live under benchtmp, removed here too.
benchtmp=$(mktemp -d -t ringtail-bench.XXXXXX)
pidfile=$benchtmp/pids
ours=(bin/ringtail bin/kfake-peer ${BENCH_BASE:+"$BENCH_BASE"})
cleanup() {
	local pid argv0 b left=()
	if [ -f "$pidfile" ]; then
		while read -r pid; do
			[ -r "/proc/$pid/cmdline" ] || continue
			argv0=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n 1) || continue
			for b in "${ours[@]}"; do
				[ "$argv0" = "$b" ] && left+=("$pid")
			done
		done <"$pidfile"
	fi
	if [ ${#left[@]} -gt 0 ]; then
		echo "bench: stopping broker processes left behind: ${left[*]}" >&2
		kill -TERM "${left[@]}" 2>/dev/null || true
		for _ in $(seq 50); do
			alive=()
			for pid in "${left[@]}"; do [ -d "/proc/$pid" ] && alive+=("$pid"); done
			[ ${#alive[@]} -gt 0 ] || break
			sleep 0.2
		done
		for pid in "${left[@]}"; do [ -d "/proc/$pid" ] && kill -KILL "$pid" 2>/dev/null || true; done
	fi
	rm -rf "$benchtmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

TMPDIR=$benchtmp bin/ringtail-perf bench \
	--ringtail bin/ringtail --kfake bin/kfake-peer "${base[@]}" "${profile[@]}" \
	--duration "${BENCH_DURATION:-10s}" --rate "${BENCH_RATE:-20000}" \
	--brokers "$brokers" \
	--workloads "$workloads" \
	--pid-file "$pidfile" \
	--out bench/results --commit "$commit" || status=$?

# Recovery time: a log of BENCH_RECOVERY_GIB GiB (default 1; the 10 GiB figures in
# docs/benchmarks.md were run by hand with `bin/ringtail-perf recovery --gib 10`), restarted after
# kill -9 and after SIGTERM; process start to ApiVersions answered. BENCH_RECOVERY=0 skips it.
if [ "$recovery" != 0 ] && [ -x bin/ringtail ]; then
	out="bench/results/$(date -u +%Y-%m-%d)-$commit-recovery"
	echo
	echo "== recovery: ${BENCH_RECOVERY_GIB:-1} GiB log, restart after kill -9 and SIGTERM, also in $out.txt =="
	TMPDIR=$benchtmp bin/ringtail-perf recovery --ringtail bin/ringtail --dir "$benchtmp" --gib "${BENCH_RECOVERY_GIB:-1}" \
		--record-bytes 256 --batch-bytes 4096 --rounds 3 --json "$out.json" | tee "$out.txt" || status=1
fi

# The storage layer alone: the WAL through io_uring and through the portable writer, in one run,
# for 256 B, 4 KiB and 64 KiB appends at 1, 16 and 128 concurrent appenders, next to the raw
# 4 KiB write+fdatasync floor. BENCH_STORAGE=0 skips it.
if [ "$storage" != 0 ]; then
	out="bench/results/$(date -u +%Y-%m-%d)-$commit-storage.txt"
	echo
	echo "== storage: WAL io_uring vs portable (go test -bench), also in $out =="
	$GO test -run '^$' -bench '^(BenchmarkWAL|BenchmarkRawWriteSync4K)$' -benchtime "${BENCH_STORAGE_TIME:-1s}" ./wal/ | tee "$out" || status=1
fi
exit $status
