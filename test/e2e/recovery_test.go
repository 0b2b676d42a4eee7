package e2e

import (
	"crypto/rand"
	"regexp"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestIdempotentRetryAfterRestart: an idempotent producer's batch is acknowledged, the broker is
// killed (kill -9) or stopped (SIGTERM) and started again, and the producer resends the same
// sequence (its ack was lost, say): the broker answers it as a duplicate, with the original
// offset, from the producer state it recovered, and the log holds it once. Small segments and
// enough other data for checkpoints put producer snapshots at segment rolls in the crash's path;
// the stop's start takes the clean path (the log line a systemd test asserts on).
func TestIdempotentRetryAfterRestart(t *testing.T) {
	b := startBroker(t, withArgs("--segment-bytes", "1048576"))
	const topic = "idem-retry"
	createTopic(t, b.Admin(t), topic, 1, nil)
	pv := pickVersion(t, apiVersions(t, b.Addr()), 0, 11)
	iv := pickVersion(t, apiVersions(t, b.Addr()), 22, 4)
	rc := dialRaw(t, b.Addr())
	ip := kmsg.NewPtrInitProducerIDRequest()
	ip.Version = iv
	ip.TransactionTimeoutMillis = 60000
	ip.ProducerID, ip.ProducerEpoch = -1, -1
	// encodeBatch takes producer id 0 for "not idempotent": ask again for a first id of 0.
	var ipr *kmsg.InitProducerIDResponse
	for ipr == nil || ipr.ProducerID == 0 {
		ipr = rc.mustRoundTrip(t, ip).(*kmsg.InitProducerIDResponse)
		if ipr.ErrorCode != 0 || ipr.ProducerID < 0 {
			t.Fatalf("InitProducerId: error %d, producer id %d", ipr.ErrorCode, ipr.ProducerID)
		}
	}
	batchAt := func(seq int32) []byte {
		return encodeBatch(batchSpec{idempotent: true, producerID: ipr.ProducerID, producerEpoch: ipr.ProducerEpoch, firstSequence: seq,
			values: [][]byte{[]byte("idem-a"), []byte("idem-b")}})
	}
	// Other records in between: segment rolls, and WAL growth for checkpoints (which write the
	// snapshots the rolls took).
	bulk := b.Client(t, kgo.ProducerBatchMaxBytes(1<<20), kgo.DisableIdempotentWrite())
	filler := func() {
		var recs []*kgo.Record
		for i := 0; i < 48; i++ {
			v := make([]byte, 512<<10)
			rand.Read(v) // incompressible: the WAL grows by what is sent
			recs = append(recs, &kgo.Record{Topic: topic, Value: v})
		}
		produceSync(t, bulk, recs...)
	}
	seq := int32(0)
	offsets := map[int32]int64{}
	produce := func(rc *rawConn) {
		ec, base := rawProduce(t, rc, pv, topic, 0, batchAt(seq))
		if ec != 0 {
			t.Fatalf("idempotent batch seq %d: error code %d", seq, ec)
		}
		offsets[seq] = base
		seq += 2
	}
	for _, kill := range []bool{true, false} {
		filler()
		produce(rc)
		filler()
		produce(rc)
		last := seq - 2
		from := b.LogLen()
		if kill {
			b.Kill()
		} else {
			b.Stop()
		}
		b.Restart()
		startLog := b.Log()[from:]
		want := "recovery: no clean shutdown marker"
		if !kill {
			want = "recovery: clean shutdown, replay skipped"
		}
		if !strings.Contains(startLog, want) {
			t.Fatalf("kill %v: the start's log lacks %q:\n%s", kill, want, startLog)
		}
		if kill && !regexp.MustCompile(`producer_snapshots_used=[1-9]`).MatchString(startLog) {
			t.Fatalf("the crash's recovery used no producer snapshot:\n%s", startLog)
		}
		rc = dialRaw(t, b.Addr())
		for _, s := range []int32{last, last - 2} {
			ec, base := rawProduce(t, rc, pv, topic, 0, batchAt(s))
			if ec != 0 || base != offsets[s] {
				t.Fatalf("kill %v: resent seq %d: error code %d, offset %d; want a duplicate at %d", kill, s, ec, base, offsets[s])
			}
		}
		// The next sequence goes on where the producer left off.
		produce(rc)
	}
	count := map[string]int{}
	for _, r := range consumeAll(t, b, topic)[0] {
		if strings.HasPrefix(string(r.Value), "idem-") {
			count[string(r.Value)]++
		}
	}
	if n := int(seq / 2); count["idem-a"] != n || count["idem-b"] != n {
		t.Fatalf("idempotent records in the log: %v, want %d of each", count, n)
	}
}
