package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ringtail/ringtail/engine/batch"
	"github.com/ringtail/ringtail/test/cluster"
)

// compactedLog is what a test produced to one partition of a compacted topic: offset → record.
type compactedLog map[int64]*kgo.Record

// produceKeyed produces n records to partition 0 of topic, record i with key k<i%keys>
// (tombstone: nil value when tomb(i)) and a value naming i, 900 bytes, and records them by the
// offsets they were acknowledged at.
func produceKeyed(t *testing.T, cl *kgo.Client, topic string, from, n, keys int, tomb func(i int) bool, log compactedLog) {
	t.Helper()
	pad := bytes.Repeat([]byte("x"), 880)
	var recs []*kgo.Record
	for i := from; i < from+n; i++ {
		r := &kgo.Record{Topic: topic, Partition: 0, Key: []byte(fmt.Sprintf("k%d", i%keys))}
		if !tomb(i) {
			r.Value = append([]byte(fmt.Sprintf("v%08d-", i)), pad...)
		}
		recs = append(recs, r)
	}
	res := cl.ProduceSync(ctxTimeout(t, opTimeout), recs...)
	if err := res.FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	for _, pr := range res {
		log[pr.Record.Offset] = pr.Record
	}
}

// latestByKey is the last record of each key in log.
func (log compactedLog) latestByKey() map[string]int64 {
	latest := map[string]int64{}
	for off, r := range log {
		if cur, ok := latest[string(r.Key)]; !ok || off > cur {
			latest[string(r.Key)] = off
		}
	}
	return latest
}

// checkCompactedRead checks records read from the start against what was produced: each record
// is the one produced at its offset (original offsets, rising), and each key's latest record is
// there — a tombstone may be gone. It returns the keys read.
func checkCompactedRead(t *testing.T, read []*kgo.Record, log compactedLog) map[string]bool {
	t.Helper()
	seen := map[string]bool{}
	byOffset := map[int64]*kgo.Record{}
	prev := int64(-1)
	for _, r := range read {
		want, ok := log[r.Offset]
		if !ok || !bytes.Equal(r.Key, want.Key) || !bytes.Equal(r.Value, want.Value) || (r.Value == nil) != (want.Value == nil) {
			t.Fatalf("offset %d reads key %q value %.12q, produced %v", r.Offset, r.Key, r.Value, want)
		}
		if r.Offset <= prev {
			t.Fatalf("offset %d after %d", r.Offset, prev)
		}
		prev = r.Offset
		byOffset[r.Offset] = r
		seen[string(r.Key)] = true
	}
	for k, off := range log.latestByKey() {
		if _, ok := byOffset[off]; !ok && log[off].Value != nil {
			t.Fatalf("key %s: its latest value, at %d, is not read", k, off)
		}
	}
	return seen
}

// holdsWithin polls cond every 100 ms until it holds (true) or d passes (false).
func holdsWithin(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// TestCompactedTopic produces many values for few keys to a cleanup.policy=compact topic with
// 1 MiB segments and a fast cleaner: once the cleaner has run, a consumer from the start gets
// every key's latest value at its original offset and far fewer records; a tombstone (sealed in
// a cleaned segment) vanishes once delete.retention.ms has passed and a later pass ran; and a
// record without a key is refused with INVALID_RECORD. (TestStandardTopicConfigsAccepted checks
// that DescribeConfigs reports the compaction configs as applied.)
func TestCompactedTopic(t *testing.T) {
	b := startBroker(t, withArgs("--segment-bytes", fmt.Sprint(1<<20), "--log-cleaner-backoff", "200ms"))
	adm := b.Admin(t)
	topic := topicName(t, "compacted")
	createTopic(t, adm, topic, 1, map[string]*string{
		"cleanup.policy":            strp("compact"),
		"delete.retention.ms":       strp("1000"),
		"min.cleanable.dirty.ratio": strp("0.1"),
	})
	cl := b.Client(t, kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(time.Millisecond),
		kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.RecordPartitioner(kgo.ManualPartitioner()))

	const keys = 8
	log := compactedLog{}
	// Key k7's last record is a tombstone at 2007; later records only use k0..k6.
	produceKeyed(t, cl, topic, 0, 2008, keys, func(i int) bool { return i == 2007 }, log)
	produceKeyed(t, cl, topic, 2008, 2000, keys-1, func(int) bool { return false }, log)
	produced := len(log)

	var read []*kgo.Record
	if !holdsWithin(60*time.Second, func() bool {
		read = consumeAll(t, b, topic)[0]
		return len(read) < produced/2
	}) {
		t.Fatalf("%d of %d records still read after 60 s; broker log:\n%s", len(read), produced, tail(b.Log(), 4000))
	}
	b.waitLog(t, "log cleaner compacted a partition", "the cleaner's log line")
	checkCompactedRead(t, read, log)

	// The tombstone goes once its horizon (1 s after its first cleaning) has passed and a pass
	// runs: more records seal another segment, which makes the next one due.
	next := 2008 + 2000
	gone := false
	for round := 0; round < 20 && !gone; round++ {
		produceKeyed(t, cl, topic, next, 1200, keys-1, func(int) bool { return false }, log)
		next += 1200
		gone = holdsWithin(5*time.Second, func() bool {
			read = consumeAll(t, b, topic)[0]
			return !checkCompactedRead(t, read, log)["k7"]
		})
	}
	if !gone {
		t.Fatalf("key k7's tombstone still read after 20 rounds; broker log:\n%s", tail(b.Log(), 4000))
	}

	// The log start stays 0 (compaction never moves it), the end is what was produced.
	so, err := adm.ListStartOffsets(ctxTimeout(t, opTimeout), topic)
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := so.Lookup(topic, 0); o.Offset != 0 {
		t.Fatalf("log start offset %d, want 0", o.Offset)
	}
	if end := endOffsets(t, adm, topic)[0]; end != int64(len(log)) {
		t.Fatalf("end offset %d, produced %d", end, len(log))
	}

	res := cl.ProduceSync(ctxTimeout(t, opTimeout), &kgo.Record{Topic: topic, Partition: 0, Value: []byte("no key")})
	if err := res.FirstErr(); !errors.Is(err, kerr.InvalidRecord) {
		t.Fatalf("produce without a key: %v, want INVALID_RECORD", err)
	}
}

// TestCompactionKillDuringCleaning kills the broker (SIGKILL) while its throttled cleaner is
// writing a cleaned segment, restarts it, and reads the topic from the start: every record is
// the one produced at its offset and every key's latest value is there; the cleaner then
// finishes its work after the restart.
func TestCompactionKillDuringCleaning(t *testing.T) {
	b := startBroker(t, withArgs("--segment-bytes", fmt.Sprint(1<<20), "--log-cleaner-backoff", "200ms",
		"--log-cleaner-io-bytes-per-second", fmt.Sprint(2<<20)))
	adm := b.Admin(t)
	topic := topicName(t, "kill")
	createTopic(t, adm, topic, 1, map[string]*string{"cleanup.policy": strp("compact")})
	cl := b.Client(t, kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(time.Millisecond),
		kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	log := compactedLog{}
	produceKeyed(t, cl, topic, 0, 6000, 5, func(i int) bool { return i%11 == 10 }, log)
	cl.Close()

	dir := filepath.Join(b.DataDir(), "logs", topic+"-0")
	cleaning := func() bool {
		m, _ := filepath.Glob(filepath.Join(dir, "*.log.cleaned"))
		return len(m) > 0
	}
	if !holdsWithin(60*time.Second, cleaning) {
		t.Fatalf("no cleaned segment file appeared in 60 s; broker log:\n%s", tail(b.Log(), 4000))
	}
	b.Kill()
	b.Restart()
	from := b.LogLen()
	read := consumeAll(t, b, topic)[0]
	checkCompactedRead(t, read, log)
	if err := b.WaitLog(ctxTimeout(t, opTimeout), from, "log cleaner compacted a partition"); err != nil {
		t.Fatalf("no cleaning after the restart: %v", err)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*.log.cleaned")); len(m) > 0 && !holdsWithin(30*time.Second, func() bool { return !cleaning() }) {
		t.Fatalf("cleaned files left: %v", m)
	}
	if !holdsWithin(60*time.Second, func() bool {
		read = consumeAll(t, b, topic)[0]
		return len(read) < len(log)/2
	}) {
		t.Fatalf("%d of %d records read after cleaning", len(read), len(log))
	}
	checkCompactedRead(t, read, log)
}

// TestCompactionFollowerCatchesUp: in a three-broker cluster each replica compacts on its own.
// A follower that was down while the leader compacted catches up from the leader's cleaned
// segments (read from the files, as a lagging follower's are), rejoins the ISR, compacts what
// it appends later itself, and, stopped, holds on disk every key's latest value at its original
// offset and nothing but records produced at their offsets; the cluster serves the same.
func TestCompactionFollowerCatchesUp(t *testing.T) {
	c := startCluster3With(t, cluster3Opts{args: []string{"--segment-bytes", fmt.Sprint(1 << 20), "--log-cleaner-backoff", "200ms"}})
	topic := topicName(t, "")
	adm := c.AdminT(t)
	resp, err := adm.CreateTopic(ctxTimeout(t, opTimeout), 1, 3, map[string]*string{
		"min.insync.replicas": strp("2"), "cleanup.policy": strp("compact")}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create %s: %v", topic, err)
	}
	waitTopicEverywhere(t, c, topic, 1)
	leader, away := killFollower(t, c, topic)

	cl := c.ClientT(t, kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(time.Millisecond),
		kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	log := compactedLog{}
	produceKeyed(t, cl, topic, 0, 5000, 6, func(i int) bool { return i%13 == 12 }, log)
	if err := c.Broker(int(leader)).WaitLog(ctxTimeout(t, opTimeout), 0, "log cleaner compacted a partition"); err != nil {
		t.Fatalf("the leader did not compact: %v", err)
	}

	restartedAt := c.Broker(int(away)).LogLen()
	if err := c.Broker(int(away)).Restart(ctxTimeout(t, clusterWait)); err != nil {
		t.Fatal(err)
	}
	waitTopicISR(t, c.Broker(int(leader)), topic, []int32{1, 2, 3})
	// What it copied is mostly compacted already; more records seal segments of its own, which
	// its cleaner compacts.
	produceKeyed(t, cl, topic, 5000, 3000, 6, func(i int) bool { return i%13 == 12 }, log)
	if err := c.Broker(int(away)).WaitLog(ctxTimeout(t, opTimeout), restartedAt, "log cleaner compacted a partition"); err != nil {
		t.Fatalf("the caught-up follower did not compact its copy: %v", err)
	}
	if err := c.Broker(int(away)).Stop(); err != nil {
		t.Fatal(err)
	}
	read := readSegments(t, filepath.Join(c.Broker(int(away)).DataDir(), "logs", topic+"-0"))
	checkCompactedRead(t, read, log)
	if len(read) >= len(log)/2 {
		t.Fatalf("the follower holds %d of %d records", len(read), len(log))
	}
	// And the cluster serves it: every key's latest value from the start.
	checkCompactedRead(t, consumeAllCluster(t, c, topic), log)
}

// readSegments reads the records of a stopped broker's partition directory, segment by segment.
func readSegments(t *testing.T, dir string) []*kgo.Record {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no segments in %s: %v", dir, err)
	}
	var out []*kgo.Record
	for _, f := range files { // names are zero-padded offsets: sorted
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		bs, err := batch.Split(data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, b := range bs {
			if err := batch.ValidateStored(b); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			h, _ := batch.ParseHeader(b)
			if h.IsControl() {
				continue
			}
			recs, _ := batch.Records(b)
			for _, r := range recs {
				out = append(out, &kgo.Record{Key: r.Key, Value: r.Value, Offset: h.BaseOffset + int64(r.OffsetDelta)})
			}
		}
	}
	return out
}

// consumeAllCluster reads partition 0 of topic from the start to its end through the cluster.
func consumeAllCluster(t *testing.T, c *cluster.Cluster, topic string) []*kgo.Record {
	t.Helper()
	end := endOffsets(t, c.AdminT(t), topic)[0]
	cl := c.ClientT(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	var out []*kgo.Record
	ctx := ctxTimeout(t, opTimeout)
	for len(out) == 0 || out[len(out)-1].Offset < end-1 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consume %s: timed out at %d records, end %d", topic, len(out), end)
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}
