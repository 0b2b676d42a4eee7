package e2e

// The checker of the fault test (faults_test.go), in the style of Jepsen's Kafka test: it reads
// a history (every send with its outcome, every consumer's reads in delivery order, a final read
// of every partition, the replicas' logs) and lists what a replicated log must never show.
//
// Which failed sends count as "definitely not written". franz-go with idempotence (the kgo
// default) fails a record only where that is safe for its sequence numbers: before the record
// was ever sent, or once the last request carrying it was answered. That is not the same as
// "not written": a request whose answer was lost (a leader killed after appending, a connection
// cut) may have appended the batch, and a later attempt answered NOT_LEADER_OR_FOLLOWER or
// NOT_ENOUGH_REPLICAS lets franz-go fail it on its delivery timeout or retry limit
// (ErrRecordTimeout, ErrRecordRetries) although the first append may survive. franz-go marks
// REQUEST_TIMED_OUT and NOT_ENOUGH_REPLICAS_AFTER_APPEND as "unsure if produced" and never fails
// such a batch on a timeout, but a lost answer leaves no such mark. So, as Kafka's own
// producer's TimeoutException, every retriable error, every timeout, a canceled context and
// ErrClientClosed are indeterminate: the value may or may not appear, and if it does, it is held
// to the same rules as any other (one offset, once). Definite are only refusals that depend on
// nothing but the batch's bytes and the topic's configuration, which every attempt of the batch
// gets alike whoever leads (definiteSendErr): MESSAGE_TOO_LARGE, RECORD_LIST_TOO_LARGE,
// INVALID_RECORD, UNSUPPORTED_COMPRESSION_TYPE, INVALID_REQUIRED_ACKS (and franz-go's own
// client-side MESSAGE_TOO_LARGE, before sending). The test's "refused" producer sends records
// over the topic's max.message.bytes so that this check has values to hold.

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ringtail/ringtail/engine/batch"
)

// faultsExamples is how many violations of each kind the summary spells out.
const faultsExamples = 5

// sendOutcome is what became of one send.
type sendOutcome uint8

const (
	sendUnanswered    sendOutcome = iota // no answer by the end: indeterminate
	sendAcked                            // acknowledged at an offset
	sendFailed                           // failed definitely: never written
	sendIndeterminate                    // failed, but may have been written
)

// faultSend is one record sent: its value (unique in the run), the partition it went to and
// what came of it.
type faultSend struct {
	value     string
	partition int32
	offset    int64 // the acknowledged offset (sendAcked)
	outcome   sendOutcome
	err       error
}

// definiteSendErr reports whether a produce promise's error means the record was certainly not
// written (see the comment at the top of this file for why so few errors qualify).
func definiteSendErr(err error) bool {
	for _, definite := range []error{kerr.MessageTooLarge, kerr.RecordListTooLarge, kerr.InvalidRecord,
		kerr.UnsupportedCompressionType, kerr.InvalidRequiredAcks} {
		if errors.Is(err, definite) {
			return true
		}
	}
	return false
}

// faultRead is one record a consumer was handed.
type faultRead struct {
	partition int32
	offset    int64
	value     string
}

// faultReader is one consumer's reads in the order it was handed them.
type faultReader struct {
	name  string
	reads []faultRead
}

// replicaBatch is one record batch of a replica's log, as its segment files hold it.
type replicaBatch struct {
	base, last int64
	epoch      int32
	data       []byte
}

// replicaLog is one replica's log of a partition.
type replicaLog struct {
	broker  int32
	inISR   bool
	batches []replicaBatch
	tail    int   // bytes after the last whole batch of its last segment
	err     error // the log could not be read
}

// faultHistory is everything the checker judges.
type faultHistory struct {
	sends   []faultSend
	readers []faultReader // the consumers during the run
	final   faultReader   // the read of every partition from offset 0 after healing
	// finalIncomplete says why the final read did not reach hw, if it did not.
	finalIncomplete []string
	hw              map[int32]int64 // per partition, the high watermark the final read ran to
	// replicas holds, per partition, every replica's log, read after a clean stop; nil: not
	// compared.
	replicas map[int32][]replicaLog
	// isrShort lists the partitions whose ISR was not every replica after healing.
	isrShort []string
	// crashes lists the brokers that exited without the nemesis making them.
	crashes []string
}

// Kinds of violation, in the order the summary lists them.
const (
	vLost          = "acknowledged values lost (not in the final read)"
	vMoved         = "acknowledged values read back at another offset"
	vConflict      = "offsets holding two values (acknowledgements and reads)"
	vDuplicate     = "values at two offsets (reads)"
	vFailedVisible = "definitely failed sends visible"
	vNonmonotonic  = "consumer offsets not increasing"
	vSkip          = "consumers skipping records"
	vReadLost      = "values read during the run missing from the final read"
	vUnknown       = "values read that no producer sent"
	vFinal         = "final read incomplete"
	vISR           = "replicas not back in the ISR after healing"
	vReplica       = "replica logs differing below the high watermark"
	vCrash         = "brokers exiting on their own"
)

var faultsKinds = []string{vLost, vMoved, vConflict, vDuplicate, vFailedVisible, vNonmonotonic, vSkip,
	vReadLost, vUnknown, vFinal, vISR, vReplica, vCrash}

// faultsVerdict is the checker's result: counts and the first few violations of each kind, and
// the run's figures.
type faultsVerdict struct {
	count    map[string]int
	examples map[string][]string
	stats    []string
}

func (v *faultsVerdict) add(kind, format string, args ...any) {
	v.count[kind]++
	if len(v.examples[kind]) < faultsExamples {
		v.examples[kind] = append(v.examples[kind], fmt.Sprintf(format, args...))
	}
}

func (v *faultsVerdict) stat(format string, args ...any) {
	v.stats = append(v.stats, fmt.Sprintf(format, args...))
}

// violations is the number of violations of every kind.
func (v *faultsVerdict) violations() int {
	n := 0
	for _, c := range v.count {
		n += c
	}
	return n
}

// String is the summary: the figures, then each kind of violation with its count and first
// examples.
func (v *faultsVerdict) String() string {
	var b strings.Builder
	for _, s := range v.stats {
		fmt.Fprintf(&b, "  %s\n", s)
	}
	if v.violations() == 0 {
		b.WriteString("  no violations\n")
		return b.String()
	}
	fmt.Fprintf(&b, "  VIOLATIONS: %d\n", v.violations())
	for _, k := range faultsKinds {
		if v.count[k] == 0 {
			continue
		}
		fmt.Fprintf(&b, "  %s: %d\n", k, v.count[k])
		for _, e := range v.examples[k] {
			fmt.Fprintf(&b, "      %s\n", e)
		}
		if more := v.count[k] - len(v.examples[k]); more > 0 {
			fmt.Fprintf(&b, "      … and %d more\n", more)
		}
	}
	return b.String()
}

// faultPos is a place in the topic.
type faultPos struct {
	partition int32
	offset    int64
}

func (p faultPos) String() string { return fmt.Sprintf("%d/%d", p.partition, p.offset) }

// checkFaults judges h.
func checkFaults(h *faultHistory) *faultsVerdict {
	v := &faultsVerdict{count: map[string]int{}, examples: map[string][]string{}}
	sent := make(map[string]*faultSend, len(h.sends))
	var acked, failed, indet, unanswered int
	for i := range h.sends {
		s := &h.sends[i]
		sent[s.value] = s
		switch s.outcome {
		case sendAcked:
			acked++
		case sendFailed:
			failed++
		case sendIndeterminate:
			indet++
		default:
			unanswered++
		}
	}
	v.stat("sends: %d, acknowledged %d, failed definitely %d, failed indeterminately %d, unanswered %d",
		len(h.sends), acked, failed, indet, unanswered)

	// Every value seen at each position, and by whom, over the acknowledgements and all reads.
	seen := map[faultPos]map[string][]string{}
	note := func(p faultPos, value, by string) {
		m := seen[p]
		if m == nil {
			m = map[string][]string{}
			seen[p] = m
		}
		if !slices.Contains(m[value], by) {
			m[value] = append(m[value], by)
		}
	}
	for _, s := range h.sends {
		if s.outcome == sendAcked {
			note(faultPos{s.partition, s.offset}, s.value, "acknowledged")
		}
	}
	all := append(slices.Clone(h.readers), h.final)
	readAt := map[string][]faultPos{} // every position a value was read at
	for _, r := range all {
		for _, rd := range r.reads {
			p := faultPos{rd.partition, rd.offset}
			note(p, rd.value, r.name)
			if !slices.Contains(readAt[rd.value], p) {
				readAt[rd.value] = append(readAt[rd.value], p)
			}
		}
	}
	finalAt := map[string][]faultPos{}
	for _, rd := range h.final.reads {
		finalAt[rd.value] = append(finalAt[rd.value], faultPos{rd.partition, rd.offset})
	}
	nRead := 0
	for _, r := range h.readers {
		nRead += len(r.reads)
	}
	v.stat("reads: %d consumers handed %d records during the run; the final read %d records over %d partitions",
		len(h.readers), nRead, len(h.final.reads), len(h.hw))

	// Every acknowledged value is in the final read, at its acknowledged offset.
	for _, s := range h.sends {
		if s.outcome != sendAcked {
			continue
		}
		at := faultPos{s.partition, s.offset}
		switch ps := finalAt[s.value]; {
		case len(ps) == 0:
			other := ""
			if vals := seen[at]; len(vals) > 1 {
				other = "; that offset holds " + describeValues(vals, s.value)
			}
			v.add(vLost, "%s acknowledged at %s%s", s.value, at, other)
		case !slices.Contains(ps, at):
			v.add(vMoved, "%s acknowledged at %s, read back at %v", s.value, at, ps)
		}
	}

	// No position holds two values.
	positions := make([]faultPos, 0, len(seen))
	for p := range seen {
		positions = append(positions, p)
	}
	sort.Slice(positions, func(i, j int) bool {
		a, b := positions[i], positions[j]
		return a.partition < b.partition || a.partition == b.partition && a.offset < b.offset
	})
	for _, p := range positions {
		if vals := seen[p]; len(vals) > 1 {
			v.add(vConflict, "%s: %s", p, describeValues(vals, ""))
		}
	}

	// No value at two positions; no definitely failed value visible; nothing unknown.
	recovered := 0
	for _, s := range h.sends {
		ps := readAt[s.value]
		if len(ps) > 1 {
			v.add(vDuplicate, "%s read at %v", s.value, ps)
		}
		if len(ps) > 0 {
			switch s.outcome {
			case sendFailed:
				v.add(vFailedVisible, "%s failed (%v) but read at %v", s.value, s.err, ps)
			case sendIndeterminate, sendUnanswered:
				recovered++
			}
		}
	}
	v.stat("indeterminate sends read back: %d of %d", recovered, indet+unanswered)
	for _, r := range all {
		for _, rd := range r.reads {
			if sent[rd.value] == nil {
				v.add(vUnknown, "%s read %q at %d/%d", r.name, rd.value, rd.partition, rd.offset)
			}
		}
	}

	// Each consumer's offsets increase by one per partition, from the start: a step back is a
	// log that changed under it, a jump over offsets some read holds is a skipped record (no
	// transactions, no compaction: a partition's offsets have no holes).
	known := map[int32][]int64{} // per partition, every offset a read holds, sorted
	for _, p := range positions {
		for _, by := range seen[p] {
			if !slices.Equal(by, []string{"acknowledged"}) {
				known[p.partition] = append(known[p.partition], p.offset)
				break
			}
		}
	}
	for _, r := range all {
		last := map[int32]int64{}
		for _, rd := range r.reads {
			prev, ok := last[rd.partition]
			if !ok {
				prev = -1
			}
			last[rd.partition] = rd.offset
			if rd.offset <= prev {
				v.add(vNonmonotonic, "%s partition %d: offset %d after %d", r.name, rd.partition, rd.offset, prev)
				continue
			}
			if rd.offset > prev+1 {
				offs := known[rd.partition]
				i, _ := slices.BinarySearch(offs, prev+1)
				if i < len(offs) && offs[i] < rd.offset {
					v.add(vSkip, "%s partition %d: offset %d after %d, skipping %d", r.name, rd.partition, rd.offset, prev, offs[i])
				}
			}
		}
	}

	// Whatever a consumer was handed had passed the high watermark: committed, so the final
	// read has it too.
	for _, r := range h.readers {
		for _, rd := range r.reads {
			if len(finalAt[rd.value]) == 0 && sent[rd.value] != nil && sent[rd.value].outcome != sendAcked {
				// Acknowledged values are reported as lost above.
				v.add(vReadLost, "%s read %s at %d/%d", r.name, rd.value, rd.partition, rd.offset)
			}
		}
	}

	for _, s := range h.finalIncomplete {
		v.add(vFinal, "%s", s)
	}
	for _, s := range h.isrShort {
		v.add(vISR, "%s", s)
	}
	for _, s := range h.crashes {
		v.add(vCrash, "%s", s)
	}
	if h.replicas != nil {
		checkReplicas(v, h.replicas, h.hw)
	}
	return v
}

// describeValues lists the values a position was seen holding and by whom, the value except
// first.
func describeValues(vals map[string][]string, except string) string {
	keys := make([]string, 0, len(vals))
	for k := range vals {
		if k != except {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s (%s)", k, strings.Join(vals[k], ", "))
	}
	return strings.Join(parts, ", ")
}

// checkReplicas compares, per partition, the replicas' logs below the high watermark hw the
// leader reported: every replica holds the same batches, byte for byte (the leader epoch
// stamped in each included), with no gap, up to hw.
//
// The logs are the segment files, read after a clean stop (readReplicaLog): no API shows a
// follower's log (Fetch is served by leaders; a replica's own fetch belongs to the replication
// protocol under test), and the files are what a restarted replica would serve. The bound is
// the leader's high watermark, not each replica's: a follower's is not visible from outside and
// never passes the leader's, and once every replica is back in the ISR (the test waits for
// that, and reports it when it does not come) each holds durably everything below the leader's,
// so comparing up to it is the strict form of comparing up to the smallest.
func checkReplicas(v *faultsVerdict, replicas map[int32][]replicaLog, hw map[int32]int64) {
	parts := make([]int32, 0, len(replicas))
	for p := range replicas {
		parts = append(parts, p)
	}
	slices.Sort(parts)
	compared := 0
	for _, p := range parts {
		logs, end := replicas[p], hw[p]
		below := make([][]replicaBatch, len(logs))
		for i, l := range logs {
			if l.err != nil {
				v.add(vReplica, "partition %d, broker %d: %v", p, l.broker, l.err)
				continue
			}
			next := int64(-1)
			for _, b := range l.batches {
				if b.base >= end {
					break
				}
				if next >= 0 && b.base != next {
					v.add(vReplica, "partition %d, broker %d: batch at offset %d follows one ending at %d", p, l.broker, b.base, next-1)
				}
				next = b.last + 1
				below[i] = append(below[i], b)
			}
			if held := heldTo(below[i]); held < end {
				v.add(vReplica, "partition %d, broker %d (in ISR: %v): its log ends at offset %d, short of the high watermark %d",
					p, l.broker, l.inISR, held, end)
			}
		}
		// The reference: the first replica that read, in the ISR if one is.
		ref := -1
		for i, l := range logs {
			if l.err == nil && (ref < 0 || l.inISR && !logs[ref].inISR) {
				ref = i
			}
		}
		for i, l := range logs {
			if i == ref || l.err != nil {
				continue
			}
			compared++
			a, b := below[ref], below[i]
			for k := 0; k < min(len(a), len(b)); k++ {
				if a[k].base != b[k].base || !bytes.Equal(a[k].data, b[k].data) {
					v.add(vReplica, "partition %d: brokers %d and %d differ %s", p, logs[ref].broker, l.broker,
						diffBatches(logs[ref].broker, l.broker, a[k], b[k]))
					break
				}
			}
		}
	}
	v.stat("replica logs: %d pairs of replicas compared over %d partitions below the high watermark", compared, len(parts))
}

// heldTo is the offset after the last of batches (0: none).
func heldTo(batches []replicaBatch) int64 {
	if len(batches) == 0 {
		return 0
	}
	return batches[len(batches)-1].last + 1
}

// diffBatches says where two replicas' first differing batches differ: at the first record
// whose offset or value differs, else in the batch headers.
func diffBatches(brokerA, brokerB int32, a, b replicaBatch) string {
	ra, errA := batch.Records(a.data)
	rb, errB := batch.Records(b.data)
	batches := fmt.Sprintf("(batches %d–%d of leader epoch %d and %d–%d of leader epoch %d)", a.base, a.last, a.epoch, b.base, b.last, b.epoch)
	if errA != nil || errB != nil {
		return fmt.Sprintf("from offset %d: records unreadable (%v; %v) %s", min(a.base, b.base), errA, errB, batches)
	}
	for i := 0; i < max(len(ra), len(rb)); i++ {
		va, oa := "nothing", int64(-1)
		if i < len(ra) {
			va, oa = valueID(ra[i].Value), a.base+int64(ra[i].OffsetDelta)
		}
		vb, ob := "nothing", int64(-1)
		if i < len(rb) {
			vb, ob = valueID(rb[i].Value), b.base+int64(rb[i].OffsetDelta)
		}
		if va != vb || oa != ob {
			return fmt.Sprintf("from offset %d: broker %d has %s, broker %d %s %s", max(oa, ob), brokerA, va, brokerB, vb, batches)
		}
	}
	return fmt.Sprintf("in the batch headers at offset %d, with the same records %s", a.base, batches)
}

// valueID is the identity of a value: all of it, or what precedes the padding of a refused
// producer's record.
func valueID(v []byte) string {
	if i := bytes.IndexByte(v, '~'); i >= 0 {
		v = v[:i]
	}
	return string(v)
}

// readReplicaLog reads the record batches of the partition directory dir (segment files
// <20-digit base offset>.log, Kafka's on-disk batch format back to back; see engine/doc.go)
// in offset order. A missing directory is an empty log. What follows the last whole batch of
// the last segment is counted as the tail (a clean stop leaves none).
func readReplicaLog(dir string) (batches []replicaBatch, tail int, err error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	var segs []string
	for _, e := range entries {
		name := e.Name()
		if base, ok := strings.CutSuffix(name, ".log"); ok && len(base) == 20 {
			if _, err := strconv.ParseUint(base, 10, 64); err == nil {
				segs = append(segs, name)
			}
		}
	}
	slices.Sort(segs) // fixed-width names: lexical order is offset order
	for i, name := range segs {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, 0, err
		}
		off := 0
		for off < len(data) {
			h, err := batch.ParseHeader(data[off:])
			if err != nil || h.Magic != 2 || off+h.Size() > len(data) {
				break
			}
			batches = append(batches, replicaBatch{base: h.BaseOffset, last: h.LastOffset(), epoch: h.PartitionLeaderEpoch,
				data: data[off : off+h.Size() : off+h.Size()]})
			off += h.Size()
		}
		if rest := len(data) - off; rest > 0 {
			if i < len(segs)-1 {
				return nil, 0, fmt.Errorf("segment %s: %d bytes at %d are not a whole batch, and a later segment follows", name, rest, off)
			}
			tail = rest
		}
	}
	return batches, tail, nil
}

// TestFaultsChecker feeds the checker made-up histories: a clean one must pass, and each kind
// of violation must be found and counted. The replica logs are written as segment files and
// read back with readReplicaLog.
func TestFaultsChecker(t *testing.T) {
	// Partition 0 holds a0 a1 a2 (acknowledged at 0, 1, 2); u3 was sent, unanswered, and made
	// it to offset 3. f was refused definitely, t timed out and is nowhere.
	clean := func() *faultHistory {
		h := &faultHistory{
			sends: []faultSend{
				{value: "a0", partition: 0, offset: 0, outcome: sendAcked},
				{value: "a1", partition: 0, offset: 1, outcome: sendAcked},
				{value: "a2", partition: 0, offset: 2, outcome: sendAcked},
				{value: "u3", partition: 0, offset: -1, outcome: sendUnanswered},
				{value: "f", partition: 0, offset: -1, outcome: sendFailed, err: kerr.MessageTooLarge},
				{value: "t", partition: 0, offset: -1, outcome: sendIndeterminate, err: kgo.ErrRecordTimeout},
			},
			readers: []faultReader{{name: "c1", reads: []faultRead{{0, 0, "a0"}, {0, 1, "a1"}}}},
			final:   faultReader{name: "final read", reads: []faultRead{{0, 0, "a0"}, {0, 1, "a1"}, {0, 2, "a2"}, {0, 3, "u3"}}},
			hw:      map[int32]int64{0: 4},
		}
		dirs := map[int32]string{}
		for _, id := range []int32{1, 2, 3} {
			dirs[id] = writeSegments(t, [][]string{{"a0", "a1"}, {"a2", "u3"}}, 1)
		}
		h.replicas = map[int32][]replicaLog{0: readLogs(t, dirs)}
		return h
	}
	if v := checkFaults(clean()); v.violations() != 0 {
		t.Fatalf("a clean history has violations:\n%s", v)
	}

	h := clean()
	h.sends = append(h.sends,
		faultSend{value: "lost", partition: 0, offset: 9, outcome: sendAcked},      // lost, and 0/9 conflicts with x9
		faultSend{value: "moved", partition: 0, offset: 5, outcome: sendAcked},     // read back at 0/4, conflicting with nothing
		faultSend{value: "dup", partition: 0, offset: -1, outcome: sendUnanswered}, // read at 0/6 and 0/7
	)
	h.sends[4].outcome = sendFailed // f becomes visible at 0/8
	h.final.reads = append(h.final.reads, faultRead{0, 4, "moved"}, faultRead{0, 6, "dup"}, faultRead{0, 7, "dup"},
		faultRead{0, 8, "f"}, faultRead{0, 10, "ghost"})
	h.readers = append(h.readers,
		faultReader{name: "c2", reads: []faultRead{{0, 0, "a0"}, {0, 9, "x9"}, {0, 1, "a1"}}}) // skips 1–8, then goes back
	h.sends = append(h.sends, faultSend{value: "x9", partition: 0, offset: -1, outcome: sendUnanswered}) // read, then gone
	h.finalIncomplete = []string{"partition 1 read to offset 3 of high watermark 5"}
	h.isrShort = []string{"partition 0: ISR [1 2] of replicas [1 2 3]"}
	h.crashes = []string{"broker 2 exited on its own"}
	h.hw[0] = 11
	dirs := map[int32]string{
		1: writeSegments(t, [][]string{{"a0", "a1"}, {"a2", "u3"}}, 1),
		2: writeSegments(t, [][]string{{"a0", "a1"}, {"a2", "zz"}}, 1), // differs from offset 2
		3: writeSegments(t, [][]string{{"a0", "a1"}}, 1),               // short
	}
	h.replicas = map[int32][]replicaLog{0: readLogs(t, dirs)}
	v := checkFaults(h)
	t.Logf("the checker's summary of a history with every kind of violation:\n%s", v)
	want := map[string]int{
		vLost:          1,
		vMoved:         1,
		vConflict:      1,
		vDuplicate:     1,
		vFailedVisible: 1,
		vNonmonotonic:  1,
		vSkip:          2, // c2 over 1–8; the final read over 9, which c2 read
		vReadLost:      1,
		vUnknown:       1,
		vFinal:         1,
		vISR:           1,
		vReplica:       4, // broker 2 differs; brokers 1, 2 and 3 all short of 11
		vCrash:         1,
	}
	for _, k := range faultsKinds {
		if v.count[k] != want[k] {
			t.Errorf("%s: %d, want %d: %v", k, v.count[k], want[k], v.examples[k])
		}
	}
}

// writeSegments writes a partition directory with one segment per element of segs, each
// holding one batch of those values (leader epoch epoch), offsets running on; it returns the
// directory.
func writeSegments(t *testing.T, segs [][]string, epoch int32) string {
	t.Helper()
	dir := t.TempDir()
	next := int64(0)
	for _, vals := range segs {
		recs := make([]batch.Record, len(vals))
		for i, v := range vals {
			recs[i] = batch.Record{OffsetDelta: int32(i), Value: []byte(v)}
		}
		b := batch.Build(batch.Header{BaseOffset: next, PartitionLeaderEpoch: epoch, ProducerID: -1, BaseSequence: -1}, recs, batch.CodecNone)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%020d.log", next)), b, 0o644); err != nil {
			t.Fatal(err)
		}
		next += int64(len(vals))
	}
	return dir
}

// readLogs reads the replica logs of brokers 1, 2, 3 from dirs, all in the ISR.
func readLogs(t *testing.T, dirs map[int32]string) []replicaLog {
	t.Helper()
	var out []replicaLog
	for _, id := range []int32{1, 2, 3} {
		l := replicaLog{broker: id, inISR: true}
		l.batches, l.tail, l.err = readReplicaLog(dirs[id])
		if l.err != nil {
			t.Fatal(l.err)
		}
		out = append(out, l)
	}
	return out
}
