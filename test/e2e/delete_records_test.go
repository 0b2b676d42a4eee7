package e2e

import (
	"errors"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestDeleteRecords moves a partition's log start with kadm (DeleteRecords): the low watermark
// comes back, ListOffsets earliest and a consumer from the start begin there, an offset past the
// end is OFFSET_OUT_OF_RANGE with a log line, and the start survives a restart.
func TestDeleteRecords(t *testing.T) {
	b := startBroker(t)
	adm := b.Admin(t)
	createTopic(t, adm, "trimmed", 1, nil)
	cl := b.Client(t, kgo.DefaultProduceTopic("trimmed"))
	for i := 0; i < 20; i++ {
		produceSync(t, cl, &kgo.Record{Value: []byte(fmt.Sprintf("v%d", i))})
	}
	del := func(at int64) kadm.DeleteRecordsResponse {
		t.Helper()
		offs := make(kadm.Offsets)
		offs.Add(kadm.Offset{Topic: "trimmed", Partition: 0, At: at})
		res, err := adm.DeleteRecords(ctxTimeout(t, opTimeout), offs)
		if err != nil {
			t.Fatalf("DeleteRecords(%d): %v", at, err)
		}
		r, ok := res.Lookup("trimmed", 0)
		if !ok {
			t.Fatalf("DeleteRecords(%d): no response for the partition", at)
		}
		return r
	}
	if r := del(12); r.Err != nil || r.LowWatermark != 12 {
		t.Fatalf("delete before 12: low watermark %d, %v", r.LowWatermark, r.Err)
	}
	if r := del(99); !errors.Is(r.Err, kerr.OffsetOutOfRange) {
		t.Fatalf("delete before 99 of 20: %v, want OFFSET_OUT_OF_RANGE", r.Err)
	}
	b.waitLog(t, "delete records: refused", "refused DeleteRecords")
	check := func(when string, b *Broker) {
		t.Helper()
		so, err := b.Admin(t).ListStartOffsets(ctxTimeout(t, opTimeout), "trimmed")
		if err != nil {
			t.Fatal(err)
		}
		if o, _ := so.Lookup("trimmed", 0); o.Offset != 12 {
			t.Fatalf("%s: earliest offset %d, want 12", when, o.Offset)
		}
		recs := consumeAll(t, b, "trimmed")[0]
		if len(recs) != 8 || recs[0].Offset != 12 || string(recs[0].Value) != "v12" {
			t.Fatalf("%s: consumed %d records from the start, first at %d", when, len(recs), recs[0].Offset)
		}
	}
	check("after DeleteRecords", b)
	b.Stop()
	b.Restart()
	check("after a restart", b)
}
