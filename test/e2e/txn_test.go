package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// sealTopic produces one plain record per partition of topic after everything else, so that a
// consumer reading up to the end offsets sees every record before it (consumeUntil waits for
// each partition's last offset, and a transaction marker, the last batch otherwise, is never
// delivered). It returns the end offsets, sentinels included.
func sealTopic(t *testing.T, b *Broker, topic string, partitions int32) map[int32]int64 {
	t.Helper()
	cl := b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for p := int32(0); p < partitions; p++ {
		produceSync(t, cl, &kgo.Record{Topic: topic, Partition: p, Value: []byte("sentinel")})
	}
	return endOffsets(t, b.Admin(t), topic)
}

// values lists the record values of byPart but the sentinels.
func values(byPart map[int32][]*kgo.Record) []string {
	var out []string
	for _, rs := range byPart {
		for _, r := range rs {
			if string(r.Value) != "sentinel" {
				out = append(out, string(r.Value))
			}
		}
	}
	sort.Strings(out)
	return out
}

// TestTransactionsCommitAndAbort: a transactional producer commits, aborts and commits again;
// a read_committed consumer sees exactly the committed records, a read_uncommitted one all of
// them; the transaction is described and listed.
func TestTransactionsCommitAndAbort(t *testing.T) {
	b := startBroker(t)
	topic := topicName(t, "")
	createTopic(t, b.Admin(t), topic, 2, nil)
	cl := b.Client(t, kgo.TransactionalID("tx-"+topic), kgo.DefaultProduceTopic(topic))
	ctx := ctxTimeout(t, opTimeout)
	run := func(prefix string, n int, commit kgo.TransactionEndTry) {
		t.Helper()
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < n; i++ {
			if err := cl.ProduceSync(ctx, kgo.StringRecord(fmt.Sprintf("%s-%03d", prefix, i))).FirstErr(); err != nil {
				t.Fatalf("produce in transaction %s: %v", prefix, err)
			}
		}
		if err := cl.EndTransaction(ctx, commit); err != nil {
			t.Fatalf("end transaction %s: %v", prefix, err)
		}
	}
	run("c1", 20, kgo.TryCommit)
	run("ab", 15, kgo.TryAbort)
	run("c2", 10, kgo.TryCommit)

	ends := sealTopic(t, b, topic, 2)
	committed := values(consumeUntil(t, b, topic, ends, kgo.FetchIsolationLevel(kgo.ReadCommitted())))
	all := values(consumeUntil(t, b, topic, ends))
	if len(committed) != 30 || strings.Contains(strings.Join(committed, ","), "ab-") {
		t.Fatalf("read_committed saw %d records, want the 30 committed ones: %v", len(committed), committed)
	}
	if len(all) != 45 {
		t.Fatalf("read_uncommitted saw %d records, want 45 (aborted included)", len(all))
	}

	adm := b.Admin(t)
	described, err := adm.DescribeTransactions(ctx, "tx-"+topic)
	if err != nil {
		t.Fatal(err)
	}
	d, ok := described["tx-"+topic]
	if !ok || d.Err != nil || d.State != "CompleteCommit" {
		t.Fatalf("DescribeTransactions: %+v", described)
	}
	listed, err := adm.ListTransactions(ctx, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := listed["tx-"+topic]; !ok {
		t.Fatalf("ListTransactions does not list tx-%s: %v", topic, listed.TransactionalIDs())
	}
	producers, err := adm.DescribeProducers(ctx, nil)
	_ = producers
	if err != nil {
		t.Logf("DescribeProducers: %v", err)
	}
}

// TestExactlyOnceETLKilled runs a consume-transform-produce loop (kgo.GroupTransactSession:
// consume A in a group, produce to B and commit the offsets in one transaction; every fourth
// transaction aborts) and kills the broker with SIGKILL in the middle; after the restart the
// loop goes on. Under read_committed every input record is in B exactly once, and nothing of
// an aborted transaction shows (read_uncommitted shows some inputs twice).
func TestExactlyOnceETLKilled(t *testing.T) {
	b := startBroker(t)
	in, out := topicName(t, "in"), topicName(t, "out")
	adm := b.Admin(t)
	createTopic(t, adm, in, 3, nil)
	createTopic(t, adm, out, 3, nil)
	const n = 600
	prod := b.Client(t, kgo.DefaultProduceTopic(in))
	var recs []*kgo.Record
	for i := 0; i < n; i++ {
		recs = append(recs, kgo.StringRecord(fmt.Sprintf("v%04d", i)))
	}
	produceSync(t, prod, recs...)

	var done atomic.Int64 // records committed by the loop (a lower bound across the crash)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	etl := func() {
		defer wg.Done()
		s, err := kgo.NewGroupTransactSession(
			kgo.SeedBrokers(b.Addr()),
			kgo.TransactionalID("etl-"+out),
			kgo.TransactionTimeout(10*time.Second),
			kgo.ConsumerGroup("etl-"+in),
			kgo.ConsumeTopics(in),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.FetchIsolationLevel(kgo.ReadCommitted()),
			kgo.RequireStableFetchOffsets(),
			kgo.DefaultProduceTopic(out),
			kgo.RetryTimeout(time.Minute),
		)
		if err != nil {
			t.Error(err)
			return
		}
		defer s.Close()
		for round := 0; ctx.Err() == nil; round++ {
			fs := s.PollRecords(ctx, 25) // small transactions, so the kill lands inside one
			if ctx.Err() != nil {
				return
			}
			if err := s.Begin(); err != nil {
				t.Errorf("begin: %v", err)
				return
			}
			var batch []*kgo.Record
			fs.EachRecord(func(r *kgo.Record) { batch = append(batch, kgo.StringRecord(string(r.Value))) })
			count := len(batch)
			// Synchronously, so an aborted transaction's records are in the log (an abort
			// drops what is still buffered).
			s.ProduceSync(ctx, batch...)
			// Every fourth transaction aborts: its records are in B, uncommitted, and the
			// session consumes them again for the next one.
			end := kgo.TryCommit
			if round%4 == 3 {
				end = kgo.TryAbort
			}
			committed, err := s.End(ctx, end)
			if committed && err == nil {
				done.Add(int64(count))
			}
		}
	}
	wg.Add(1)
	go etl()
	waitFor(t, opTimeout, "the loop committed a third of the input", func() bool { return done.Load() >= n/3 })
	b.Kill()
	b.Restart()
	// The loop reconnects by itself; wait until B holds every input record under read_committed.
	w := watchCommitted(t, b, out)
	waitFor(t, 2*opTimeout, "every input record in the output", func() bool { return w.distinct() >= n })
	cancel()
	wg.Wait()

	ends := sealTopic(t, b, out, 3)
	got := values(consumeUntil(t, b, out, ends, kgo.FetchIsolationLevel(kgo.ReadCommitted())))
	count := map[string]int{}
	for _, v := range got {
		count[v]++
	}
	for i := 0; i < n; i++ {
		v := fmt.Sprintf("v%04d", i)
		if count[v] != 1 {
			t.Errorf("input %s is in the output %d times under read_committed", v, count[v])
		}
	}
	if len(count) != n {
		t.Errorf("%d distinct values in the output, want %d", len(count), n)
	}
	if all := values(consumeUntil(t, b, out, ends)); len(all) <= n {
		t.Errorf("read_uncommitted shows %d records: no aborted transaction reached the log, the test proves nothing", len(all))
	}
}

// committedWatcher reads topic under read_committed from the start, record by record, for
// a test waiting until some values are there.
type committedWatcher struct {
	cl   *kgo.Client
	seen map[string]int
}

func watchCommitted(t *testing.T, b *Broker, topic string) *committedWatcher {
	return &committedWatcher{seen: map[string]int{}, cl: b.Client(t, kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))}
}

// distinct polls once (up to a short while) and returns how many distinct values were seen.
func (w *committedWatcher) distinct() int {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	w.cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { w.seen[string(r.Value)]++ })
	return len(w.seen)
}
