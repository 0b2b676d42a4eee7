#!/usr/bin/env bash
# compat/run.sh — drive a real Ringtail broker with unmodified third-party Kafka clients:
#   * kcat (librdkafka): produce and consume every compression codec with acks=all (one run also
#     with enable.idempotence=true) and compare exactly; metadata with -L; a balanced consumer
#     group (-G): two members share a 4-partition topic, a third resumes from their commits.
#   * confluent-kafka-python (compat/python_compat.py, run with Debian's /usr/bin/python3):
#     AdminClient create/list/describe/delete topics, and an idempotent acks=all Producer plus an
#     assign()-based Consumer for every codec, compared exactly; subscribe() group consumers
#     (range and cooperative-sticky) with synchronous commits, rebalances on join and leave, and
#     resumption from the committed offsets.
#     Transactions (compat/python_txn.py): a transactional Producer committing, aborting and
#     leaving a transaction open, read with read_committed and read_uncommitted; fencing; and a
#     consume-transform-produce loop with send_offsets_to_transaction.
#   * kcat reading committed and aborted transactions with isolation.level=read_committed and
#     read_uncommitted.
#   * kafkajs (compat/kafkajs/*.js, pinned by compat/kafkajs/package-lock.json and installed
#     there with `npm ci` when missing): a consumer group of two, then a fresh member resuming
#     from the commits (group.js); a transactional producer committing and aborting, sendOffsets,
#     readUncommitted: false consumers (txn.js).
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
#   COMPAT_ONLY=REGEX        run only the checks whose name matches (bash =~), e.g. 'group'
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
SKIPPED=0
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
command -v node >/dev/null 2>&1 || missing+=("node (Node.js >= 14, for kafkajs)")
command -v npm >/dev/null 2>&1 || missing+=("npm (for kafkajs)")
if ((${#missing[@]})); then
	die "missing: ${missing[*]}. Install with: apt-get install -y --no-install-recommends kcat python3-confluent-kafka nodejs npm (.ci/run does this)"
fi

section "clients"
say "kcat:    $(kcat -V 2>&1 | sed -n 's/^Version \([^ ]*\) .*librdkafka \([^ ]*\).*/kcat \1, librdkafka \2/p' | head -n1)"
say "python:  $("$PY" -c 'import sys, confluent_kafka as c; print("python", sys.version.split()[0], "confluent-kafka", c.version()[0], "librdkafka", c.libversion()[0])')"
say "node:    node $(node --version), npm $(npm --version), kafkajs $(sed -n 's/^ *"kafkajs": *"\(.*\)".*/\1/p' "$ROOT/compat/kafkajs/package.json" | head -n1) (compat/kafkajs/package.json)"

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
	if [[ -n ${COMPAT_ONLY:-} && ! $name =~ $COMPAT_ONLY ]]; then
		SKIPPED=$((SKIPPED + 1))
		return 0
	fi
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

# --- kcat consumer groups ------------------------------------------------------------------------

# kcat_member_state ERRFILE: from a kcat -G member's stderr (not -q), the partitions of its current
# assignment ("0 2"), or "-" when its last rebalance event was a revoke or it has none yet.
kcat_member_state() {
	local line
	line=$(grep -E '^% Group .* rebalanced .*: (assigned|revoked):' "$1" 2>/dev/null | tail -n 1 || true)
	case $line in
	*"): assigned:"*) printf '%s\n' "${line#*assigned: }" | grep -oE '\[[0-9]+\]' | tr -d '[]' | sort -n | tr '\n' ' ' | sed 's/ $//' ;;
	*) echo "-" ;;
	esac
}

# kcat_group: librdkafka's balanced consumer (classic protocol, its default range/roundrobin
# assignors) through kcat -G. Two members of one group share a 4-partition topic: half the records
# are produced before they join, the other half once both hold a share of the partitions. Together
# they must read every record at least once, with disjoint assignments covering the 4 partitions
# and the records of the second half read only by the member owning their partition. They are
# then stopped with SIGTERM (librdkafka closes the consumer: commits its offsets, leaves the
# group); M more records are produced and one new member of the group, with -e, must read exactly
# those M and nothing before them (committed offsets resumed).
kcat_group() {
	local topic="compat-kcat-group-$RUN_ID" group="compat-kcat-group-$RUN_ID"
	local dir=$WORK/$topic n=$RECORDS m=$((RECORDS / 4 > 0 ? RECORDS / 4 : 1))
	local half=$((n / 2))
	mkdir -p "$dir"
	timeout "$CHECK_TIMEOUT" "$PY" "$ROOT/compat/python_compat.py" --broker "$BROKER" create-topic --topic "$topic" --partitions 4 || return 1

	# Keyed records (the default partitioner spreads them over the 4 partitions); the value is the
	# record's index.
	gen() { awk -v from="$1" -v to="$2" 'BEGIN { for (i = from; i < to; i++) printf "k%06d\tg%06d\n", i, i }'; }
	produce() { # FROM TO
		gen "$1" "$2" >"$dir/produce-$1"
		echo "+ kcat -P -t $topic -X acks=all  (records $1..$(($2 - 1)))"
		timeout "$CHECK_TIMEOUT" kcat -b "$BROKER" -P -t "$topic" -K $'\t' -X acks=all <"$dir/produce-$1" || {
			echo "kcat producer failed or timed out (records $1..$(($2 - 1)))"
			return 1
		}
	}
	local -a gargs=(-b "$BROKER" -G "$group" -X auto.offset.reset=earliest -X enable.auto.commit=true
		-X auto.commit.interval.ms=200 -X session.timeout.ms=10000 -u -f '%p %o %s\n')

	produce 0 "$half" || return 1

	echo "+ kcat ${gargs[*]} $topic   (members a and b, concurrently)"
	local pa pb
	timeout "$((CHECK_TIMEOUT * 2))" kcat "${gargs[@]}" "$topic" >"$dir/a.out" 2>"$dir/a.err" &
	pa=$!
	timeout "$((CHECK_TIMEOUT * 2))" kcat "${gargs[@]}" "$topic" >"$dir/b.out" 2>"$dir/b.err" &
	pb=$!
	stop_members() {
		kill -TERM "$pa" "$pb" 2>/dev/null || true
		wait "$pa" 2>/dev/null || true
		wait "$pb" 2>/dev/null || true
	}

	# Wait for a stable split: each member's last rebalance event an assignment, disjoint, together
	# the 4 partitions.
	local sa sb deadline=$((SECONDS + CHECK_TIMEOUT)) split=
	while ((SECONDS < deadline)); do
		sa=$(kcat_member_state "$dir/a.err")
		sb=$(kcat_member_state "$dir/b.err")
		if [[ $sa != - && $sb != - && -n $sa && -n $sb ]] &&
			[[ $(printf '%s\n' $sa $sb | sort -n | tr '\n' ' ') == "0 1 2 3 " ]]; then
			split=1
			break
		fi
		if ! kill -0 "$pa" 2>/dev/null || ! kill -0 "$pb" 2>/dev/null; then
			break
		fi
		sleep 0.2
	done
	echo "assignments: member a [$sa], member b [$sb]"
	if [[ -z $split ]]; then
		echo "the two members never held disjoint assignments covering partitions 0-3 within ${CHECK_TIMEOUT}s"
		stop_members
		echo "member a stderr:"; sed 's/^/    /' "$dir/a.err" | tail -n 20
		echo "member b stderr:"; sed 's/^/    /' "$dir/b.err" | tail -n 20
		return 1
	fi

	if ! produce "$half" "$n"; then
		stop_members
		return 1
	fi

	# Until every index 0..n-1 has been read by a or b.
	local seen=0
	deadline=$((SECONDS + CHECK_TIMEOUT))
	while ((SECONDS < deadline)); do
		seen=$(cat "$dir/a.out" "$dir/b.out" | awk '{ print $3 }' | sort -u | wc -l)
		((seen >= n)) && break
		sleep 0.2
	done
	# Both still running, then stopped cleanly: SIGTERM makes kcat close the consumer (final
	# commit, LeaveGroup) and exit 0.
	local rca=0 rcb=0 alive=1
	kill -0 "$pa" 2>/dev/null && kill -0 "$pb" 2>/dev/null || alive=
	kill -TERM "$pa" "$pb" 2>/dev/null || true
	wait "$pa" || rca=$?
	wait "$pb" || rcb=$?
	local ok=1
	if [[ -z $alive ]]; then
		echo "a member exited on its own before it was stopped (status a=$rca b=$rcb)"
		ok=
	fi
	if ((rca || rcb)); then
		echo "members did not exit cleanly after SIGTERM: status a=$rca b=$rcb"
		ok=
	fi
	local ca cb
	ca=$(wc -l <"$dir/a.out")
	cb=$(wc -l <"$dir/b.out")
	echo "member a read $ca records, member b $cb; $seen of $n distinct records read"
	if ((seen != n)); then
		echo "records never read by either member (first 10):"
		comm -23 <(gen 0 "$n" | cut -f2 | sort) <(cat "$dir/a.out" "$dir/b.out" | awk '{ print $3 }' | sort -u) | head -n 10
		ok=
	fi
	# The second half was produced after the split: each of its records must have been read by
	# the member owning its partition, and only by it.
	if ! awk -v half="$half" -v sa="$sa" -v sb="$sb" '
		BEGIN { split(sa, x, " "); for (i in x) own[x[i]] = "a"; split(sb, y, " "); for (i in y) own[y[i]] = "b" }
		FNR == 1 { m = (FILENAME ~ /a\.out$/) ? "a" : "b" }
		{ idx = substr($3, 2) + 0
		  if (idx >= half) {
			n[m]++; parts[m, $1] = 1
			if (own[$1] != m) { if (bad++ < 10) printf "record %s (partition %s) read by member %s, assigned to %s\n", $3, $1, m, own[$1] }
		  } }
		END {
			printf "records produced after the split: member a read %d, member b %d\n", n["a"], n["b"]
			if (n["a"] == 0 || n["b"] == 0) { print "one member read none of them: the partitions were not shared"; bad++ }
			exit bad > 0
		}' "$dir/a.out" "$dir/b.out"; then
		ok=
	fi
	[[ -n $ok ]] || { echo "member a stderr:"; sed 's/^/    /' "$dir/a.err" | tail -n 15; echo "member b stderr:"; sed 's/^/    /' "$dir/b.err" | tail -n 15; return 1; }

	# Resume: M new records, one new member reads to the end (-e) and must see exactly them.
	produce "$n" "$((n + m))" || return 1
	echo "+ kcat ${gargs[*]} -e $topic   (member c, after a and b closed)"
	local rc=0
	timeout "$CHECK_TIMEOUT" kcat "${gargs[@]}" -e "$topic" >"$dir/c.out" 2>"$dir/c.err" || rc=$?
	if ((rc)); then
		((rc == 124)) && echo "member c timed out after ${CHECK_TIMEOUT}s without reaching the end of its partitions (-e)" || echo "member c failed (status $rc)"
		sed 's/^/    /' "$dir/c.err" | tail -n 15
		return 1
	fi
	echo "member c assignment: [$(grep -E '\): assigned:' "$dir/c.err" | tail -n 1 | grep -oE '\[[0-9]+\]' | tr -d '[]' | tr '\n' ' ' | sed 's/ $//' || true)]; read $(wc -l <"$dir/c.out") records, want the $m new ones"
	if ! diff <(gen "$n" "$((n + m))" | cut -f2 | sort) <(awk '{ print $3 }' "$dir/c.out" | sort) >"$dir/c.diff"; then
		echo "member c did not read exactly the $m records produced after the commit (< expected, > read); first lines:"
		head -n 20 "$dir/c.diff"
		echo "($(grep -c '^>' "$dir/c.diff" || true) unexpected, $(grep -c '^<' "$dir/c.diff" || true) missing; an unexpected record from before g$(printf '%06d' "$n") means a committed offset was lost)"
		return 1
	fi
	echo "kcat -G: $n records shared by two members, committed offsets resumed by a third ($m new records)"
}

# kcat_txn: a 2-partition topic holding committed, aborted and committed transactions (written by
# compat/python_txn.py produce-txns, a librdkafka transactional producer) read to the end with kcat:
# with -X isolation.level=read_committed exactly the committed values, in produce order per
# partition (the broker's last stable offset and aborted-transactions list let librdkafka drop the
# aborted batches and the control records); with read_uncommitted all of them.
kcat_txn() {
	local topic="compat-kcat-txn-$RUN_ID"
	local dir=$WORK/$topic
	mkdir -p "$dir"
	timeout "$CHECK_TIMEOUT" "$PY" "$ROOT/compat/python_txn.py" --broker "$BROKER" --records "$RECORDS" \
		produce-txns --topic "$topic" --out-dir "$dir" || return 1
	local iso want rc ok=1
	for iso in read_committed read_uncommitted; do
		want=$dir/committed
		[[ $iso == read_uncommitted ]] && want=$dir/all
		local -a cargs=(-b "$BROKER" -C -t "$topic" -o beginning -e -q -X isolation.level=$iso -f '%p\t%s\n')
		echo "+ kcat ${cargs[*]}"
		rc=0
		timeout "$CHECK_TIMEOUT" kcat "${cargs[@]}" >"$dir/$iso" 2>"$dir/$iso.err" || rc=$?
		if ((rc)); then
			((rc == 124)) && echo "kcat ($iso) timed out after ${CHECK_TIMEOUT}s without reaching the end of the topic (-e)" || echo "kcat ($iso) failed (status $rc):"
			head -n 20 "$dir/$iso.err"
			ok=
			continue
		fi
		# Per partition in offset order (sort -s keeps kcat's order within a partition).
		if ! diff "$want" <(sort -s -n -k1,1 "$dir/$iso") >"$dir/$iso.diff"; then
			echo "kcat $iso: read $(wc -l <"$dir/$iso") values, want the $(wc -l <"$want") of $(basename "$want") (< want, > read); first lines:"
			head -n 20 "$dir/$iso.diff"
			ok=
			continue
		fi
		echo "kcat $iso: exactly the $(wc -l <"$want") expected values, in produce order per partition"
	done
	[[ -n $ok ]]
}

section "kcat (librdkafka): acks=all produce and consume, $RECORDS records per codec"
for c in "${CODECS[@]}"; do
	run_check "kcat/produce-consume/$c" kcat_produce_consume "$c" false
done
run_check "kcat/produce-consume/zstd+idempotence" kcat_produce_consume zstd true
run_check "kcat/produce-consume/gzip+3-partitions" kcat_produce_consume gzip false 3
run_check "kcat/metadata" kcat_metadata

section "kcat (librdkafka): balanced consumer group (-G), $RECORDS records"
run_check "kcat/group" kcat_group

section "kcat (librdkafka): isolation.level=read_committed over committed and aborted transactions"
run_check "kcat/txn/read-committed" kcat_txn

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
section "confluent-kafka-python: subscribe() group consumers, synchronous commits, $RECORDS records"
run_check "python/group/range" py_check group --assignor range
run_check "python/group/cooperative-sticky" py_check group --assignor cooperative-sticky

py_txn_check() {
	timeout "$((CHECK_TIMEOUT * 2))" "$PY" "$ROOT/compat/python_txn.py" --broker "$BROKER" --records "$RECORDS" --run-id "$RUN_ID" "$@"
}

section "confluent-kafka-python: transactional Producer, read_committed, send_offsets_to_transaction"
run_check "python/txn" py_txn_check txn
run_check "python/txn/send-offsets" py_txn_check send-offsets

# --- kafkajs checks ----------------------------------------------------------------------------

# kafkajs_run SCRIPT: runs compat/kafkajs/SCRIPT (see its header) against the broker. The pinned
# kafkajs (package-lock.json) is installed with `npm ci` when node_modules lacks it.
kafkajs_run() {
	local script=$1 dir=$ROOT/compat/kafkajs
	if [[ ! -f $dir/node_modules/kafkajs/package.json ]]; then
		echo "+ (cd compat/kafkajs && npm ci --no-audit --no-fund)"
		(cd "$dir" && timeout 300 npm ci --no-audit --no-fund) || {
			echo "npm ci failed in $dir: kafkajs could not be installed (registry or npm cache unreachable?)"
			return 1
		}
	fi
	echo "+ node compat/kafkajs/$script --broker $BROKER --records $RECORDS --run-id $RUN_ID"
	timeout "$((CHECK_TIMEOUT * 3))" node "$dir/$script" --broker "$BROKER" --records "$RECORDS" --run-id "$RUN_ID"
}

# group.js: two kafkajs consumers share a 4-partition topic in one group, commit, leave, and a
# fresh one resumes from the commits.
section "kafkajs: consumer group (eachMessage), $RECORDS records"
run_check "kafkajs/group" kafkajs_run group.js
# txn.js: a transactional producer commits, aborts and commits; readUncommitted: false consumers
# see only the committed records.
section "kafkajs: transactions, $RECORDS records"
run_check "kafkajs/txn" kafkajs_run txn.js

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
if ((SKIPPED)); then
	say "compat: $PASSED passed, $FAILED failed ($SKIPPED skipped: COMPAT_ONLY=$COMPAT_ONLY)"
else
	say "compat: $PASSED passed, $FAILED failed"
fi
((FAILED == 0))
