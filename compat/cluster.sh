#!/usr/bin/env bash
# compat/cluster.sh — unmodified third-party producers ride through a leader change (issue 12).
#
# Starts three `bin/ringtail serve` processes as in the README's cluster section (free ports,
# fresh data directories) and waits until each accepts connections and `ringtail cluster
# status` shows all three live. Then, for each client in turn:
#   1. create a fresh topic with 3 partitions, replication factor 3, min.insync.replicas=2
#      (compat/python_failover.py create-topic), and wait until every replica is in sync;
#   2. start the client: an idempotent acks=all producer of the values 000000..N-1 (value i to
#      partition i % 3 where the client picks partitions), paced at about R a second;
#   3. once a third of them are reported delivered, kill -9 the leader of partition 0 (from
#      Metadata);
#   4. let the client finish on its own: it must report every value delivered, with no failed
#      delivery and no fatal error — the application never retries, so the leader change may
#      only have reached it as errors the client retried by itself (printed for the record);
#   5. read every partition back to its high watermark (compat/python_failover.py verify): each
#      value exactly once, in increasing order within its partition, at the partition and offset
#      its delivery report gave;
#   6. restart the killed broker and wait until it is live and back in every ISR of the topic.
# The clients:
#   * confluent-kafka-python (librdkafka, Debian's python3-confluent-kafka): python_failover.py
#     produce, acks=all, enable.idempotence=true;
#   * kcat (librdkafka): -X acks=all -X enable.idempotence=true, fed N keyed numbered lines on
#     stdin (its default partitioner spreads them; -v -v -v reports each delivery's partition
#     and offset);
#   * kafkajs (compat/kafkajs/failover.js): idempotent, acks -1;
#   * franz-go (compat/franzgo, built here): kgo's defaults (idempotent, acks=all).
# A client needs no setting for a leader change of ~10 s (a killed broker is fenced after the
# 9 s --session-timeout); the scripts say, where they configure the client, why.
#
# Then the transaction checks of compat/run.sh (confluent-kafka-python's send_offsets_to_transaction
# loop, kafkajs' transactions) run against the three brokers (cluster_txn).
#
# Called by `make compat` after compat/run.sh. The brokers are stopped on exit, also on failure
# (SIGTERM, then SIGKILL after 10 s). Exits non-zero if any check fails.
#
# Environment:
#   COMPAT_FAILOVER_RECORDS=N  values per client (default 2000)
#   COMPAT_FAILOVER_RATE=R     values a second (default 200: production spans ~10 s, the kill
#                              lands ~3 s in and the leader change takes longer than the rest)
#   RINGTAIL_BIN=path          broker binary (default bin/ringtail)
#   COMPAT_KEEP=1              keep the work directory (data dirs, logs) even when all pass
#   COMPAT_ONLY=REGEX          run only the checks whose name matches (bash =~), e.g. 'kcat'
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

RECORDS=${COMPAT_FAILOVER_RECORDS:-2000}
RATE=${COMPAT_FAILOVER_RATE:-200}
PARTITIONS=3
CLIENT_TIMEOUT=120 # seconds for one client's run: ~10 s of production plus the leader change
CLUSTER_WAIT=60    # seconds for the cluster to form, a broker to rejoin, a topic to be in sync
RINGTAIL_BIN=${RINGTAIL_BIN:-$ROOT/bin/ringtail}
PY=/usr/bin/python3 # Debian's python: the one python3-confluent-kafka installs into.
GO=${GO:-go}

WORK=$(mktemp -d -t ringtail-compat-cluster.XXXXXX)
exec 9>&1 # the script's stdout, for cleanup, which may run while a check's output is redirected
RUN_ID=$(date +%s)-$$
PASSED=0
FAILED=0
SKIPPED=0
FAILED_NAMES=()
declare -A PID       # node id -> broker pid (empty when not running)
declare -A LISTEN    # node id -> client address
declare -A RAFT      # node id -> --raft-addr
declare -A REPL      # node id -> --replication-listen
CLIENT_PID=
NODES=(1 2 3)

say() { printf '%s\n' "$*"; }
section() { printf '\n== %s ==\n' "$*"; }

show_broker_logs() {
	local id
	for id in "${NODES[@]}"; do
		[[ -s $WORK/broker-$id.log ]] || continue
		say "---- broker $id log ($WORK/broker-$id.log), last 60 lines ----"
		tail -n 60 "$WORK/broker-$id.log" | sed 's/^/  | /'
	done
	say "---- end of broker logs ----"
}

# broker_alive PID: the process exists and is not a zombie (a broker that died on its own stays
# a zombie child of this shell until waited for).
broker_alive() {
	local state
	state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) && [[ -n $state && $state != Z ]]
}

# kill_tree PID: SIGKILL to PID and its descendants (a client runs under timeout, kcat under a
# subshell with its generator).
kill_tree() {
	local child
	for child in $(pgrep -P "$1" 2>/dev/null || true); do
		kill_tree "$child"
	done
	kill -KILL "$1" 2>/dev/null || true
}

cleanup() {
	local rc=$? id
	if [[ -n $CLIENT_PID ]]; then
		kill_tree "$CLIENT_PID"
	fi
	for id in "${NODES[@]}"; do
		[[ -n ${PID[$id]:-} ]] && kill -TERM "${PID[$id]}" 2>/dev/null || true
	done
	for _ in $(seq 1 100); do
		local up=
		for id in "${NODES[@]}"; do
			[[ -n ${PID[$id]:-} ]] && broker_alive "${PID[$id]}" && up=1
		done
		[[ -z $up ]] && break
		sleep 0.1
	done
	for id in "${NODES[@]}"; do
		if [[ -n ${PID[$id]:-} ]] && broker_alive "${PID[$id]}"; then
			say "compat-cluster: broker $id did not stop within 10s of SIGTERM; sending SIGKILL" >&9
			kill -KILL "${PID[$id]}" 2>/dev/null || true
		fi
		[[ -n ${PID[$id]:-} ]] && { wait "${PID[$id]}" 2>/dev/null || true; }
	done
	if [[ $rc -ne 0 || ${COMPAT_KEEP:-} == 1 ]]; then
		say "compat-cluster: work directory kept: $WORK" >&9
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() {
	say "compat-cluster: FAIL: $*" >&2
	show_broker_logs >&2
	exit 1
}

# --- prerequisites -----------------------------------------------------------------------------

missing=()
command -v kcat >/dev/null 2>&1 || missing+=("kcat")
if [[ ! -x $PY ]] || ! "$PY" -c 'import confluent_kafka' >/dev/null 2>&1; then
	missing+=("python3-confluent-kafka (for $PY)")
fi
command -v timeout >/dev/null 2>&1 || missing+=("coreutils timeout")
command -v node >/dev/null 2>&1 || missing+=("node")
command -v npm >/dev/null 2>&1 || missing+=("npm")
command -v "$GO" >/dev/null 2>&1 || missing+=("go (for compat/franzgo)")
if ((${#missing[@]})); then
	die "missing: ${missing[*]}. Install with: apt-get install -y --no-install-recommends kcat python3-confluent-kafka nodejs npm (.ci/run does this)"
fi
[[ -x $RINGTAIL_BIN ]] || die "$RINGTAIL_BIN not found or not executable: run 'make build' first (make compat does)"

# kafkajs, pinned by compat/kafkajs/package-lock.json, as compat/run.sh installs it.
if [[ ! -f $ROOT/compat/kafkajs/node_modules/kafkajs/package.json ]]; then
	say "+ (cd compat/kafkajs && npm ci --no-audit --no-fund)"
	(cd "$ROOT/compat/kafkajs" && timeout 300 npm ci --no-audit --no-fund) || die "npm ci failed in compat/kafkajs: kafkajs could not be installed"
fi
say "+ $GO build -o $WORK/bin/franzgo ./compat/franzgo"
CGO_ENABLED=0 "$GO" build -o "$WORK/bin/franzgo" ./compat/franzgo || die "building compat/franzgo failed"

# --- the cluster -------------------------------------------------------------------------------

# Nine free ports at once, each socket held until all are chosen, so no two are the same.
read -r -a PORTS <<<"$("$PY" -c '
import socket
ss = [socket.socket() for _ in range(9)]
for s in ss:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))
')"
PEERS=
for k in 0 1 2; do
	id=${NODES[$k]}
	LISTEN[$id]=127.0.0.1:${PORTS[$k]}
	RAFT[$id]=127.0.0.1:${PORTS[$((k + 3))]}
	REPL[$id]=127.0.0.1:${PORTS[$((k + 6))]}
	PEERS+=${PEERS:+,}$id@${RAFT[$id]}
done
BROKERS=${LISTEN[1]},${LISTEN[2]},${LISTEN[3]}

start_broker() { # ID: start (or restart, same data directory) node ID, log appended
	local id=$1
	mkdir -p "$WORK/data-$id"
	echo "--- start $(date -u +%FT%T.%3NZ)" >>"$WORK/broker-$id.log"
	"$RINGTAIL_BIN" serve --node-id "$id" --listen "${LISTEN[$id]}" --data-dir "$WORK/data-$id" \
		--raft-addr "${RAFT[$id]}" --replication-listen "${REPL[$id]}" --peers "$PEERS" \
		>>"$WORK/broker-$id.log" 2>&1 &
	PID[$id]=$!
}

port_open() { # host:port
	timeout 1 bash -c "exec 3<>/dev/tcp/${1%:*}/${1##*:}" 2>/dev/null
}

# wait_cluster: every broker process running and accepting connections, and `ringtail cluster
# status` listing the three brokers live. Returns 1 (saying why) after $CLUSTER_WAIT seconds.
wait_cluster() {
	local deadline=$((SECONDS + CLUSTER_WAIT)) id why status
	while :; do
		why=
		for id in "${NODES[@]}"; do
			if [[ -z ${PID[$id]:-} ]] || ! broker_alive "${PID[$id]}"; then
				echo "broker $id is not running (see $WORK/broker-$id.log)"
				return 1
			fi
			port_open "${LISTEN[$id]}" || why="broker $id does not accept connections on ${LISTEN[$id]}"
		done
		if [[ -z $why ]]; then
			status=$("$RINGTAIL_BIN" cluster status --brokers "$BROKERS" --timeout 5s 2>&1) || true
			local live
			live=$(awk '$1 ~ /^[0-9]+$/ && / live/ { n++ } END { print n + 0 }' <<<"$status")
			((live == 3)) && return 0
			why="ringtail cluster status lists $live live brokers: $(tr '\n' ' ' <<<"$status")"
		fi
		if ((SECONDS >= deadline)); then
			echo "after ${CLUSTER_WAIT}s: $why"
			return 1
		fi
		sleep 0.2
	done
}

section "cluster"
say "clients: kcat $(kcat -V 2>&1 | sed -n 's/^Version \([^ ]*\) .*librdkafka \([^ ]*\).*/\1 (librdkafka \2)/p' | head -n1)," \
	"$("$PY" -c 'import confluent_kafka as c; print("confluent-kafka", c.version()[0], "(librdkafka", c.libversion()[0] + ")")')," \
	"kafkajs $(node -p 'require("./compat/kafkajs/node_modules/kafkajs/package.json").version'), franz-go $(sed -n 's/^\tgithub.com\/twmb\/franz-go \(v[^ ]*\)$/\1/p' go.mod)"
for id in "${NODES[@]}"; do
	say "starting broker $id: --listen ${LISTEN[$id]} --raft-addr ${RAFT[$id]} --replication-listen ${REPL[$id]} (log: $WORK/broker-$id.log)"
	start_broker "$id"
done
t=$SECONDS
why=$(wait_cluster) || die "the cluster did not form: $why"
say "three brokers live ($((SECONDS - t))s): $BROKERS"

# --- the check ---------------------------------------------------------------------------------

pyf() { "$PY" "$ROOT/compat/python_failover.py" --brokers "$BROKERS" "$@"; }

# Each client is started in the background by start_CLIENT DIR TOPIC (setting CLIENT_PID), and
# delivered_CLIENT DIR counts the values it has reported delivered so far; once it has exited,
# DIR/delivered holds "index partition offset" lines (index "-" when the client does not say).
start_python() {
	timeout "$CLIENT_TIMEOUT" "$PY" "$ROOT/compat/python_failover.py" --brokers "$BROKERS" produce --topic "$2" \
		--partitions "$PARTITIONS" --records "$RECORDS" --rate "$RATE" --out "$1/delivered" >"$1/client.out" 2>&1 &
	CLIENT_PID=$!
}
start_kafkajs() {
	timeout "$CLIENT_TIMEOUT" node "$ROOT/compat/kafkajs/failover.js" --brokers "$BROKERS" --topic "$2" \
		--partitions "$PARTITIONS" --records "$RECORDS" --rate "$RATE" --out "$1/delivered" >"$1/client.out" 2>&1 &
	CLIENT_PID=$!
}
start_franzgo() {
	timeout "$CLIENT_TIMEOUT" "$WORK/bin/franzgo" --brokers "$BROKERS" --topic "$2" \
		--partitions "$PARTITIONS" --records "$RECORDS" --rate "$RATE" --out "$1/delivered" >"$1/client.out" 2>&1 &
	CLIENT_PID=$!
}
# kcat reads "key<TAB>value" lines from a paced generator (10 lines, then a sleep) and, with
# -v -v -v, writes "% Message delivered to partition P (offset O) ..." per delivery on stderr.
# librdkafka's own settings are left alone: retries are unlimited until message.timeout.ms
# (300 s), so a leader change of ~10 s needs nothing.
start_kcat() {
	local pause
	pause=$(awk -v r="$RATE" 'BEGIN { printf "%.3f", 10 / r }')
	(
		for ((i = 0; i < RECORDS; i++)); do
			printf 'k%06d\t%06d\n' "$i" "$i"
			((i % 10 == 9)) && sleep "$pause"
		done | timeout "$CLIENT_TIMEOUT" kcat -b "$BROKERS" -P -t "$2" -K $'\t' \
			-X acks=all -X enable.idempotence=true -v -v -v 2>"$1/client.err"
	) >"$1/client.out" 2>&1 &
	CLIENT_PID=$!
}
delivered_python() { [[ -f $1/delivered ]] && wc -l <"$1/delivered" || echo 0; }
delivered_kafkajs() { delivered_python "$@"; }
delivered_franzgo() { delivered_python "$@"; }
delivered_kcat() { grep -c '^% Message delivered' "$1/client.err" 2>/dev/null || true; }

# kcat_result DIR: after kcat exited 0, DIR/delivered from its stderr; fails on a failed
# delivery or a fatal error. Its "% ERROR: Local: Broker transport failure" lines are
# librdkafka's error_cb for the lost connection: not fatal, shown for the record.
kcat_result() {
	sed -n 's/^% Message delivered to partition \([0-9]*\) (offset \([0-9-]*\)).*/- \1 \2/p' "$1/client.err" >"$1/delivered"
	grep '^% ERROR' "$1/client.err" | sort | uniq -c | sed 's/^ *\([0-9]*\) /      kcat reported (not fatal) \1x: /' || true
	if grep -qiE 'delivery failed|fatal' "$1/client.err"; then
		echo "FAIL: kcat reported a failed delivery or a fatal error:"
		grep -iE 'delivery failed|fatal' "$1/client.err" | head -n 10
		return 1
	fi
	echo "ok:   kcat delivered $(wc -l <"$1/delivered") values, no failed delivery, no fatal error"
}

# stop_client: the running client and what it started, killed and reaped.
stop_client() {
	kill_tree "$CLIENT_PID"
	wait "$CLIENT_PID" 2>/dev/null || true
	CLIENT_PID=
}

# failover CLIENT: steps 1-6 of the header for one client.
failover() {
	local client=$1
	local topic="compat-failover-$client-$RUN_ID" dir=$WORK/$client
	mkdir -p "$dir"
	echo "+ create-topic $topic: $PARTITIONS partitions, replication factor 3, min.insync.replicas=2"
	pyf create-topic --topic "$topic" --partitions "$PARTITIONS" --replication-factor 3 --min-insync 2 || return 1

	echo "+ $client: $RECORDS values at ~$RATE/s"
	"start_$client" "$dir" "$topic"
	local third=$((RECORDS / 3)) n=0 deadline=$((SECONDS + CLIENT_TIMEOUT))
	while :; do
		n=$("delivered_$client" "$dir")
		((n >= third)) && break
		if ! kill -0 "$CLIENT_PID" 2>/dev/null || ((SECONDS >= deadline)); then
			stop_client
			echo "FAIL: $client stopped or stalled with $n values delivered, before the kill"
			cat "$dir/client.out" "$dir/client.err" 2>/dev/null | tail -n 30
			return 1
		fi
		sleep 0.05
	done
	local victim
	victim=$(pyf leader --topic "$topic" --partition 0 2>>"$dir/helpers.err")
	if [[ -z ${PID[$victim]:-} ]]; then
		stop_client
		echo "FAIL: the leader of partition 0 is '$victim', not a running broker"
		return 1
	fi
	local killed_at=$SECONDS
	echo "+ $n values delivered: kill -9 of broker $victim (pid ${PID[$victim]}), the leader of $topic/0"
	kill -KILL "${PID[$victim]}"
	wait "${PID[$victim]}" 2>/dev/null || true
	PID[$victim]=
	echo "--- kill -9 $(date -u +%FT%T.%3NZ) by compat/cluster.sh ($client)" >>"$WORK/broker-$victim.log"

	local rc=0
	wait "$CLIENT_PID" || rc=$?
	CLIENT_PID=
	echo "$client exited with status $rc, $((SECONDS - killed_at))s after the kill:"
	cat "$dir/client.out"
	local ok=1
	if ((rc)); then
		((rc == 124)) && echo "FAIL: $client did not finish within ${CLIENT_TIMEOUT}s"
		[[ -s $dir/client.err ]] && { echo "$client stderr:"; grep -v '^% Message delivered' "$dir/client.err" | tail -n 30; }
		ok=
	elif [[ $client == kcat ]]; then
		kcat_result "$dir" || ok=
	fi
	local leader
	leader=$(pyf leader --topic "$topic" --partition 0 2>>"$dir/helpers.err") || leader="none"
	echo "partition 0: leader $leader now (broker $victim killed)"
	if [[ $leader == "$victim" || $leader == none ]]; then
		echo "FAIL: partition 0 has no new leader, yet the client finished"
		ok=
	fi
	if [[ -n $ok ]]; then
		pyf verify --topic "$topic" --partitions "$PARTITIONS" --records "$RECORDS" --delivered "$dir/delivered" 2>>"$dir/helpers.err" || ok=
	fi

	echo "+ restart broker $victim"
	start_broker "$victim"
	local t=$SECONDS why
	why=$(wait_cluster) || { echo "FAIL: broker $victim did not rejoin: $why"; return 1; }
	pyf wait-isr --topic "$topic" --replicas 3 2>>"$dir/helpers.err" || return 1
	echo "broker $victim live and back in every ISR of $topic $((SECONDS - t))s after its restart"
	[[ -n $ok ]]
}

# run_check NAME FUNC ARGS...: runs FUNC in this shell (it kills and restarts brokers, whose
# pids this shell keeps) with its output in a file; prints PASS/FAIL with the output on failure.
# After a failed check every broker that is down is restarted, so the next check starts from
# three live brokers.
run_check() {
	local name=$1
	shift
	if [[ -n ${COMPAT_ONLY:-} && ! $name =~ $COMPAT_ONLY ]]; then
		SKIPPED=$((SKIPPED + 1))
		return 0
	fi
	local out=$WORK/check-${name//[^A-Za-z0-9_.-]/_}.out
	local start=$SECONDS rc=0
	"$@" >"$out" 2>&1 || rc=$?
	if ((rc == 0)); then
		PASSED=$((PASSED + 1))
		say "PASS  $name  ($((SECONDS - start))s)"
		# What the client made of the leader change, for the record (none for cluster_txn).
		grep -E '^\+ .*kill -9|exited with status|^      |^partition 0: leader|back in every ISR' "$out" | sed 's/^ */      /' || true
		return 0
	fi
	FAILED=$((FAILED + 1))
	FAILED_NAMES+=("$name")
	say "FAIL  $name  (status $rc, $((SECONDS - start))s)"
	sed 's/^/  > /' "$out" | tail -n 60
	local id why
	for id in "${NODES[@]}"; do
		if [[ -z ${PID[$id]:-} ]] || ! broker_alive "${PID[$id]}"; then
			[[ -n ${PID[$id]:-} ]] && { wait "${PID[$id]}" 2>/dev/null || true; }
			say "      restarting broker $id for the next check"
			start_broker "$id"
		fi
	done
	why=$(wait_cluster) || die "the cluster did not recover after $name: $why"
}

section "producers through a kill -9 of the partition leader: $RECORDS values at ~$RATE/s, RF 3, min.insync.replicas 2"
run_check "failover/confluent-kafka-python" failover python
run_check "failover/kcat" failover kcat
run_check "failover/kafkajs" failover kafkajs
run_check "failover/franz-go" failover franzgo

# cluster_txn CLIENT: compat/run.sh's transaction checks against the three brokers. Their topics
# have replication factor 1 and so spread over the brokers: the transaction and group
# coordinators hold no replica of some of the partitions they take offsets and markers for
# (which one node, or RF 3 on three nodes, never shows). python: python_txn.py send-offsets
# (consume-transform-produce with send_offsets_to_transaction); kafkajs: kafkajs/txn.js.
cluster_txn() {
	case $1 in
	python) timeout "$CLIENT_TIMEOUT" "$PY" "$ROOT/compat/python_txn.py" --broker "$BROKERS" --run-id "cluster-$RUN_ID" send-offsets ;;
	kafkajs) timeout "$CLIENT_TIMEOUT" node "$ROOT/compat/kafkajs/txn.js" --broker "${BROKERS%%,*}" --run-id "cluster-$RUN_ID" ;;
	esac
}

section "transactions across brokers: coordinators and partitions on different brokers"
run_check "txn/confluent-kafka-python" cluster_txn python
run_check "txn/kafkajs" cluster_txn kafkajs

# --- summary -----------------------------------------------------------------------------------

section "summary"
for id in "${NODES[@]}"; do
	if [[ -z ${PID[$id]:-} ]] || ! broker_alive "${PID[$id]}"; then
		FAILED=$((FAILED + 1))
		FAILED_NAMES+=("broker-$id-alive")
		say "FAIL  broker $id is not running at the end"
	fi
done
if ((FAILED)); then
	say "failed checks: ${FAILED_NAMES[*]}"
	show_broker_logs
fi
if ((SKIPPED)); then
	say "compat-cluster: $PASSED passed, $FAILED failed ($SKIPPED skipped: COMPAT_ONLY=$COMPAT_ONLY)"
else
	say "compat-cluster: $PASSED passed, $FAILED failed"
fi
((FAILED == 0))
