#!/usr/bin/env bash
# compat/run.sh — drive a real Ringtail broker with unmodified third-party Kafka clients:
#   * kcat (librdkafka): produce and consume every compression codec with acks=all (one run also
#     with enable.idempotence=true) and compare exactly; metadata with -L.
#   * confluent-kafka-python (compat/python_compat.py, run with Debian's /usr/bin/python3):
#     AdminClient create/list/describe/delete topics, and an idempotent acks=all Producer plus an
#     assign()-based Consumer for every codec, compared exactly.
#
# Called by `make compat` after `make build`. It starts `bin/ringtail serve` on a free port with a
# fresh data directory, stops it on exit, and exits non-zero if any check fails.
#
# Environment:
#   COMPAT_BROKER=host:port  use an already running broker instead of starting bin/ringtail
#   COMPAT_RECORDS=N         records per produce/consume check (default 1000)
#   COMPAT_TIMEOUT=S         timeout in seconds for each client run (default 60)
#   RINGTAIL_BIN=path        broker binary (default bin/ringtail)
#   COMPAT_KEEP=1            keep the work directory (data dir, logs) even when everything passes
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

RECORDS=${COMPAT_RECORDS:-1000}
CHECK_TIMEOUT=${COMPAT_TIMEOUT:-60}
RINGTAIL_BIN=${RINGTAIL_BIN:-$ROOT/bin/ringtail}
PY=/usr/bin/python3 # Debian's python: the one python3-confluent-kafka installs into.
CODECS=(none gzip snappy lz4 zstd)

WORK=$(mktemp -d -t ringtail-compat.XXXXXX)
BROKER_LOG=$WORK/broker.log
BROKER_PID=
RUN_ID=$(date +%s)-$$ # topic-name suffix, so reruns against a long-lived broker never collide
PASSED=0
FAILED=0
FAILED_NAMES=()

say() { printf '%s\n' "$*"; }
section() { printf '\n== %s ==\n' "$*"; }

show_broker_log() {
	if [[ -s $BROKER_LOG ]]; then
		say "---- broker log ($BROKER_LOG), last 200 lines ----"
		tail -n 200 "$BROKER_LOG" | sed 's/^/  | /'
		say "---- end of broker log ----"
	fi
}

cleanup() {
	local rc=$?
	if [[ -n $BROKER_PID ]] && kill -0 "$BROKER_PID" 2>/dev/null; then
		kill -TERM "$BROKER_PID" 2>/dev/null || true
		for _ in $(seq 1 50); do
			kill -0 "$BROKER_PID" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$BROKER_PID" 2>/dev/null; then
			say "compat: broker did not stop within 5s of SIGTERM; sending SIGKILL"
			kill -KILL "$BROKER_PID" 2>/dev/null || true
		fi
		wait "$BROKER_PID" 2>/dev/null || true
	fi
	if [[ $rc -ne 0 || ${COMPAT_KEEP:-} == 1 ]]; then
		say "compat: work directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() {
	say "compat: FAIL: $*" >&2
	show_broker_log >&2
	exit 1
}

# --- prerequisites -----------------------------------------------------------------------------

missing=()
command -v kcat >/dev/null 2>&1 || missing+=("kcat")
if [[ ! -x $PY ]] || ! "$PY" -c 'import confluent_kafka' >/dev/null 2>&1; then
	missing+=("python3-confluent-kafka (for $PY)")
fi
command -v timeout >/dev/null 2>&1 || missing+=("coreutils timeout")
if ((${#missing[@]})); then
	die "missing: ${missing[*]}. Install with: apt-get install -y --no-install-recommends kcat python3-confluent-kafka (.ci/run does this)"
fi

section "clients"
say "kcat:    $(kcat -V 2>&1 | sed -n 's/^Version \([^ ]*\) .*librdkafka \([^ ]*\).*/kcat \1, librdkafka \2/p' | head -n1)"
say "python:  $("$PY" -c 'import sys, confluent_kafka as c; print("python", sys.version.split()[0], "confluent-kafka", c.version()[0], "librdkafka", c.libversion()[0])')"

# --- broker ------------------------------------------------------------------------------------

free_port() {
	"$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

port_open() { # host port
	timeout 1 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

section "broker"
if [[ -n ${COMPAT_BROKER:-} ]]; then
	BROKER=$COMPAT_BROKER
	say "using the running broker at $BROKER (COMPAT_BROKER); not starting bin/ringtail"
else
	[[ -x $RINGTAIL_BIN ]] || die "$RINGTAIL_BIN not found or not executable: run 'make build' first (make compat does)"
	PORT=$(free_port)
	BROKER=127.0.0.1:$PORT
	mkdir -p "$WORK/data"
	say "starting: $RINGTAIL_BIN serve --listen $BROKER --data-dir $WORK/data  (log: $BROKER_LOG)"
	"$RINGTAIL_BIN" serve --listen "$BROKER" --data-dir "$WORK/data" >"$BROKER_LOG" 2>&1 &
	BROKER_PID=$!
fi

host=${BROKER%:*}
port=${BROKER##*:}
deadline=$((SECONDS + 30))
until port_open "$host" "$port"; do
	if [[ -n $BROKER_PID ]] && ! kill -0 "$BROKER_PID" 2>/dev/null; then
		wait "$BROKER_PID" && rc=0 || rc=$?
		BROKER_PID=
		die "broker exited (status $rc) before it accepted connections on $BROKER"
	fi
	((SECONDS < deadline)) || die "nothing accepts connections on $BROKER after 30s"
	sleep 0.2
done
say "broker is accepting connections on $BROKER"

# --- check runner ------------------------------------------------------------------------------

# run_check NAME FUNC ARGS...: runs FUNC with its output in a file, prints PASS/FAIL with the
# output on failure, and keeps going so one run reports every broken check.
run_check() {
	local name=$1
	shift
	local out=$WORK/check-${name//[^A-Za-z0-9_.-]/_}.out
	local start=$SECONDS rc=0
	("$@") >"$out" 2>&1 || rc=$?
	if [[ -n $BROKER_PID ]] && ! kill -0 "$BROKER_PID" 2>/dev/null; then
		((rc != 0)) || rc=1
		echo "broker process is gone (crashed or exited) after this check" >>"$out"
	fi
	if ((rc == 0)); then
		PASSED=$((PASSED + 1))
		say "PASS  $name  ($((SECONDS - start))s)"
	else
		FAILED=$((FAILED + 1))
		FAILED_NAMES+=("$name")
		say "FAIL  $name  (status $rc, $((SECONDS - start))s)"
		sed 's/^/  > /' "$out" | tail -n 60
	fi
}

# --- kcat checks -------------------------------------------------------------------------------

# kcat_produce_consume CODEC IDEMPOTENT [PARTITIONS]: produce $RECORDS keyed records with a header,
# acks=all and the codec to a fresh topic, read them back from the beginning and compare: same
# count, same key/value/header, and within each partition the produce order and increasing
# offsets. Without PARTITIONS the broker auto-creates the topic on first produce; with it the
# topic is created first (AdminClient) and kcat's default partitioner spreads keys over them.
kcat_produce_consume() {
	local codec=$1 idem=$2 partitions=${3:-}
	local topic="compat-kcat-$codec"
	[[ $idem == true ]] && topic+="-idem"
	[[ -n $partitions ]] && topic+="-p$partitions"
	topic+="-$RUN_ID"
	local dir=$WORK/$topic
	mkdir -p "$dir"
	if [[ -n $partitions ]]; then
		timeout "$CHECK_TIMEOUT" "$PY" "$ROOT/compat/python_compat.py" --broker "$BROKER" create-topic --topic "$topic" --partitions "$partitions"
	fi

	# key<TAB>value, one per line; the index is in the key, so order can be checked per partition.
	# Values vary in length and repeat enough for the codecs to actually compress.
	awk -v n="$RECORDS" -v c="$codec" 'BEGIN {
		for (i = 0; i < n; i++) {
			pad = ""
			for (j = 0; j < i % 17; j++) pad = pad "ringtail-"
			printf "k%06d\tv%06d-%s-%s%s\n", i, i, c, pad, (i % 3 == 0 ? "tail" : "")
		}
	}' >"$dir/expected"

	local -a pargs=(-b "$BROKER" -P -t "$topic" -K $'\t' -H "compat=$codec" -X acks=all -X compression.codec="$codec")
	[[ $idem == true ]] && pargs+=(-X enable.idempotence=true)
	echo "+ kcat ${pargs[*]} < expected ($RECORDS records)"
	# kcat reports failed deliveries on stderr and exits non-zero; keep both for the report.
	local rc=0
	timeout "$CHECK_TIMEOUT" kcat "${pargs[@]}" <"$dir/expected" 2>"$dir/produce.err" || rc=$?
	if ((rc)); then
		((rc == 124)) && echo "kcat producer timed out after ${CHECK_TIMEOUT}s" || echo "kcat producer failed (status $rc):"
		cat "$dir/produce.err"
		return 1
	fi
	if grep -qiE 'fail|error' "$dir/produce.err"; then
		echo "kcat producer reported errors:"
		cat "$dir/produce.err"
		return 1
	fi

	local -a cargs=(-b "$BROKER" -C -t "$topic" -o beginning -e -q -f '%p\t%o\t%h\t%k\t%s\n')
	echo "+ kcat ${cargs[*]}"
	timeout "$CHECK_TIMEOUT" kcat "${cargs[@]}" >"$dir/consumed" 2>"$dir/consume.err" || rc=$?
	if ((rc)); then
		if ((rc == 124)); then
			echo "kcat consumer timed out after ${CHECK_TIMEOUT}s without reaching the end of the topic (-e);" \
				"$(wc -l <"$dir/consumed") of $RECORDS records read"
		else
			echo "kcat consumer failed (status $rc):"
		fi
		head -n 20 "$dir/consume.err"
		echo "(rerun by hand with -d fetch to see librdkafka's view)"
		return 1
	fi

	local got
	got=$(wc -l <"$dir/consumed")
	if [[ $got -ne $RECORDS ]]; then
		echo "consumed $got records, produced $RECORDS"
		echo "consumer stderr:"
		head -n 20 "$dir/consume.err"
		echo "first consumed lines:"
		head -n 5 "$dir/consumed"
	fi

	# Exact content: the multiset of key/value pairs must match, and every record has the header.
	if ! diff <(sort "$dir/expected") <(cut -f4- "$dir/consumed" | sort) >"$dir/content.diff"; then
		echo "content differs (< produced, > consumed), first lines:"
		head -n 20 "$dir/content.diff"
		return 1
	fi
	[[ $got -eq $RECORDS ]] || return 1
	local badh
	badh=$(cut -f3 "$dir/consumed" | grep -cvxF "compat=$codec" || true)
	if ((badh)); then
		echo "$badh records lack the header compat=$codec; first consumed headers:"
		cut -f3 "$dir/consumed" | head -n 3
		return 1
	fi

	# Order within each partition: offsets strictly increasing and record indexes increasing.
	if ! awk -F'\t' '{
		p = $1; off = $2 + 0; idx = substr($4, 2) + 0
		if ((p in lastoff) && off <= lastoff[p]) { printf "partition %s: offset %d after %d\n", p, off, lastoff[p]; bad = 1 }
		if ((p in lastidx) && idx <= lastidx[p]) { printf "partition %s: record %s after k%06d (produce order lost)\n", p, $4, lastidx[p]; bad = 1 }
		lastoff[p] = off; lastidx[p] = idx; count[p]++
	}
	END {
		for (p in count) { printf "partition %s: %d records\n", p, count[p]; n++ }
		if (want > 0 && n != want) { printf "records landed in %d partitions, want all %d\n", n, want; bad = 1 }
		exit bad
	}' want="${partitions:-0}" "$dir/consumed"; then
		return 1
	fi
	echo "$RECORDS records round-tripped exactly (codec $codec, idempotence $idem)"
}

# kcat_metadata: -L lists the broker at the address clients were given, and the topics the
# produce checks created, each with a leader.
kcat_metadata() {
	local out=$WORK/kcat-metadata.json
	echo "+ kcat -b $BROKER -L -J"
	timeout "$CHECK_TIMEOUT" kcat -b "$BROKER" -L -J >"$out"
	"$PY" - "$out" "$BROKER" "$RUN_ID" <<'EOF'
import json, sys
path, broker, run_id = sys.argv[1:]
md = json.load(open(path))
brokers = md.get("brokers", [])
print("brokers:", brokers)
ok = True
if len(brokers) != 1:
    print("expected exactly one broker, got", len(brokers)); ok = False
elif brokers[0].get("name") != broker:
    print("broker advertises %r, clients connected to %r" % (brokers[0].get("name"), broker)); ok = False
ours = [t for t in md.get("topics", []) if t.get("topic", "").endswith(run_id)]
print("topics of this run:", sorted(t["topic"] for t in ours))
if not ours:
    print("none of this run's topics are listed"); ok = False
for t in ours:
    if t.get("error"):
        print("topic %s: error %s" % (t["topic"], t["error"])); ok = False
    parts = t.get("partitions", [])
    if not parts:
        print("topic %s: no partitions" % t["topic"]); ok = False
    for p in parts:
        if p.get("error") or p.get("leader") != brokers[0].get("id"):
            print("topic %s partition %s: leader %s error %s" % (t["topic"], p.get("partition"), p.get("leader"), p.get("error"))); ok = False
sys.exit(0 if ok else 1)
EOF
}

section "kcat (librdkafka): acks=all produce and consume, $RECORDS records per codec"
for c in "${CODECS[@]}"; do
	run_check "kcat/produce-consume/$c" kcat_produce_consume "$c" false
done
run_check "kcat/produce-consume/zstd+idempotence" kcat_produce_consume zstd true
run_check "kcat/produce-consume/gzip+3-partitions" kcat_produce_consume gzip false 3
run_check "kcat/metadata" kcat_metadata

# --- confluent-kafka-python checks -------------------------------------------------------------

py_check() {
	# The script bounds each of its own waits (30s); this only catches a hang.
	timeout "$((CHECK_TIMEOUT * 2))" "$PY" "$ROOT/compat/python_compat.py" --broker "$BROKER" --records "$RECORDS" --run-id "$RUN_ID" "$@"
}

section "confluent-kafka-python: AdminClient"
run_check "python/admin" py_check admin
section "confluent-kafka-python: idempotent acks=all Producer, assign() Consumer, $RECORDS records per codec"
for c in "${CODECS[@]}"; do
	run_check "python/produce-consume/$c" py_check produce-consume --codec "$c"
done

# --- summary -----------------------------------------------------------------------------------

section "summary"
if [[ -n $BROKER_PID ]]; then
	if kill -0 "$BROKER_PID" 2>/dev/null; then
		say "broker still running after all checks (pid $BROKER_PID)"
	else
		FAILED=$((FAILED + 1))
		FAILED_NAMES+=("broker-alive")
		say "FAIL  broker-alive: the broker process exited during the checks"
	fi
fi
if ((FAILED)); then
	say "failed checks: ${FAILED_NAMES[*]}"
	show_broker_log
fi
say "compat: $PASSED passed, $FAILED failed"
((FAILED == 0))
