package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kversion"

	"github.com/ringtail/ringtail/engine/batch"
)

// TestCompactionRemovesTransactionMarkers: a transactional producer commits and aborts many
// transactions on a few keys of a compacted topic (delete.retention.ms 1 s), then plain records
// supersede every key. The log cleaner empties the transactions, stamps their markers and, past
// the horizon, removes them: a raw fetch from the start finds one marker left (the one of the
// producer's last transaction, whose batch stays so recovery knows the producer), a
// read_committed consumer reads every key's latest value, the last stable offset is the end
// offset; so after kill -9 and a restart, where the same transactional id commits once more.
func TestCompactionRemovesTransactionMarkers(t *testing.T) {
	b := startBroker(t, withArgs("--log-cleaner-backoff", "200ms"))
	adm := b.Admin(t)
	topic := topicName(t, "txn-compacted")
	createTopic(t, adm, topic, 1, map[string]*string{
		"cleanup.policy":            strp("compact"),
		"delete.retention.ms":       strp("1000"),
		"min.cleanable.dirty.ratio": strp("0.01"),
		"segment.ms":                strp("300"), // seals the transactions' segments by age
	})
	const txnID = "compacted-markers"
	txc := b.Client(t, kgo.TransactionalID(txnID), kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	const txns = 40
	for i := range txns {
		if err := txc.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		var recs []*kgo.Record
		for k := range 4 {
			recs = append(recs, &kgo.Record{Partition: 0, Key: []byte(fmt.Sprintf("k%d", k)), Value: []byte(fmt.Sprintf("txn-%d", i))})
		}
		produceSync(t, txc, recs...)
		end := kgo.TryCommit
		if i%5 == 4 {
			end = kgo.TryAbort // the last one too: its marker stays with the producer's last batch
		}
		if err := txc.EndTransaction(ctxTimeout(t, opTimeout), end); err != nil {
			t.Fatal(err)
		}
	}
	txc.Close()
	plain := b.Client(t, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for k := range 4 {
		produceSync(t, plain, &kgo.Record{Partition: 0, Key: []byte(fmt.Sprintf("k%d", k)), Value: []byte("final")})
	}

	// markers counts the transaction markers of the partition, read raw from the start (Fetch
	// v12, by topic name).
	raw := b.Client(t, kgo.MaxVersions(kversion.V3_0_0()))
	markers := func() int {
		t.Helper()
		end := endOffsets(t, adm, topic)[0]
		n := 0
		for off := int64(0); off < end; {
			resp, err := fetchReq(12, topic, 0, off, 0).RequestWith(ctxTimeout(t, opTimeout), raw)
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 || resp.Topics[0].Partitions[0].ErrorCode != 0 {
				t.Fatalf("raw fetch at %d: %+v", off, resp)
			}
			bs, err := batch.Split(resp.Topics[0].Partitions[0].RecordBatches)
			if err != nil || len(bs) == 0 {
				t.Fatalf("raw fetch at %d: %d batches, %v", off, len(bs), err)
			}
			for _, raw := range bs {
				h, _ := batch.ParseHeader(raw)
				if h.IsControl() && h.NumRecords > 0 {
					n++
				}
				off = h.LastOffset() + 1
			}
		}
		return n
	}
	// A plain record now and then rolls the aged segment (sealing the transactions for the
	// cleaner) and gives it dirty records to plan passes by.
	filler := 0
	if !holdsWithin(60*time.Second, func() bool {
		filler++
		produceSync(t, plain, &kgo.Record{Partition: 0, Key: []byte("filler"), Value: []byte(fmt.Sprint(filler))})
		return markers() == 1
	}) {
		t.Fatalf("%d of %d transaction markers left after 60 s; broker log:\n%s", markers(), txns, tail(b.Log(), 4000))
	}
	b.waitLog(t, "markers_removed=", "the cleaner's log line")

	check := func(when string) {
		t.Helper()
		lso, err := adm.ListCommittedOffsets(ctxTimeout(t, opTimeout), topic)
		if err != nil {
			t.Fatal(err)
		}
		end := endOffsets(t, adm, topic)[0]
		if o, _ := lso.Lookup(topic, 0); o.Err != nil || o.Offset != end {
			t.Fatalf("%s: last stable offset %d (%v), end offset %d: a transaction is left open", when, o.Offset, o.Err, end)
		}
		latest := map[string]string{}
		for _, r := range consumeAll(t, b, topic, kgo.FetchIsolationLevel(kgo.ReadCommitted()))[0] {
			latest[string(r.Key)] = string(r.Value)
		}
		for k := range 4 {
			if v := latest[fmt.Sprintf("k%d", k)]; v != "final" {
				t.Fatalf("%s: read_committed reads k%d = %q, want its latest value", when, k, v)
			}
		}
	}
	check("after the markers went")

	b.Kill()
	b.Restart()
	if n := markers(); n != 1 {
		t.Fatalf("after a restart: %d transaction markers", n)
	}
	check("after kill -9 and a restart")
	txc = b.Client(t, kgo.TransactionalID(txnID), kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err := txc.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	produceSync(t, txc, &kgo.Record{Partition: 0, Key: []byte("after"), Value: []byte("restart")})
	if err := txc.EndTransaction(ctxTimeout(t, opTimeout), kgo.TryCommit); err != nil {
		t.Fatalf("a transaction after the restart: %v", err)
	}
	produceSync(t, plain, &kgo.Record{Partition: 0, Key: []byte("filler"), Value: []byte("last")}) // a record ends the log
	check("after a transaction after the restart")
}
