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

	"github.com/ringtail/ringtail/test/cluster"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
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
}

// describeProducer is what DescribeProducers answers for producer pid on partition 0 of topic
// (the first producer when pid is -1).
func describeProducer(t *testing.T, b *Broker, topic string, pid int64) kadm.DescribedProducer {
	t.Helper()
	described, err := b.Admin(t).DescribeProducers(ctxTimeout(t, opTimeout), kadm.TopicsSet{topic: {0: struct{}{}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range described.SortedProducers() {
		if p.ProducerID == pid || pid < 0 {
			return p
		}
	}
	t.Fatalf("DescribeProducers: no producer %d on %s-0: %+v", pid, topic, described)
	return kadm.DescribedProducer{}
}

// TestWriteTxnMarkersStaleCoordinatorEpoch: a partition leader refuses a WriteTxnMarkers whose
// coordinator epoch is below that of the producer's last marker with
// TRANSACTION_COORDINATOR_FENCED (a deposed coordinator's), and takes an equal or newer one;
// DescribeProducers reports the producer's last timestamp and that coordinator epoch.
func TestWriteTxnMarkersStaleCoordinatorEpoch(t *testing.T) {
	b := startBroker(t)
	topic := topicName(t, "")
	createTopic(t, b.Admin(t), topic, 1, nil)
	before := time.Now().UnixMilli()
	cl := b.Client(t, kgo.TransactionalID("tx-"+topic), kgo.DefaultProduceTopic(topic))
	ctx := ctxTimeout(t, opTimeout)
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, kgo.StringRecord("one")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	p := describeProducer(t, b, topic, -1)
	// One node: __transaction_state's partitions keep leader epoch 0.
	if p.CoordinatorEpoch != 0 || p.LastTimestamp < before || p.CurrentTxnStartOffset != -1 {
		t.Fatalf("after the commit the producer is described as %+v; want coordinator epoch 0, a timestamp from %d, no open transaction", p, before)
	}
	raw := b.Client(t)
	mark := func(coordEpoch int32) int16 {
		t.Helper()
		req := kmsg.NewPtrWriteTxnMarkersRequest()
		req.Version = 1
		m := kmsg.NewWriteTxnMarkersRequestMarker()
		m.ProducerID, m.ProducerEpoch, m.CoordinatorEpoch = p.ProducerID, p.ProducerEpoch, coordEpoch
		mt := kmsg.NewWriteTxnMarkersRequestMarkerTopic()
		mt.Topic, mt.Partitions = topic, []int32{0}
		m.Topics = append(m.Topics, mt)
		req.Markers = append(req.Markers, m)
		resp, err := req.RequestWith(ctxTimeout(t, opTimeout), raw)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Markers[0].Topics[0].Partitions[0].ErrorCode
	}
	if code := mark(5); code != 0 {
		t.Fatalf("marker of a newer coordinator (epoch 5): %v", kerr.ErrorForCode(code))
	}
	if got := describeProducer(t, b, topic, p.ProducerID).CoordinatorEpoch; got != 5 {
		t.Fatalf("coordinator epoch %d after a marker of epoch 5", got)
	}
	if code := mark(4); code != kerr.TransactionCoordinatorFenced.Code {
		t.Fatalf("marker of a deposed coordinator (epoch 4 after 5): %v, want TRANSACTION_COORDINATOR_FENCED", kerr.ErrorForCode(code))
	}
	if code := mark(5); code != 0 {
		t.Fatalf("marker of the same coordinator again: %v", kerr.ErrorForCode(code))
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
	done, stop := startETL(t, b.Client(t, kgo.DefaultProduceTopic(in)), []string{b.Addr()}, in, out, n)
	waitFor(t, opTimeout, "the loop committed a third of the input", func() bool { return done.Load() >= n/3 })
	b.Kill()
	b.Restart()
	// The loop reconnects by itself; wait until B holds every input record under read_committed.
	w := watchCommitted(func(o ...kgo.Opt) *kgo.Client { return b.Client(t, o...) }, out)
	waitFor(t, 2*opTimeout, "every input record in the output", func() bool { return w.distinct() >= n })
	stop()

	ends := sealTopic(t, b, out, 3)
	client := func(o ...kgo.Opt) *kgo.Client { return b.Client(t, o...) }
	checkExactlyOnce(t, client, out, ends, n)
}

// startETL produces the n input values v0000… to in with prod, then runs runETL from seeds
// until stop is called (stop waits for it; the test's end calls it too). done counts the input
// records of committed transactions.
func startETL(t *testing.T, prod *kgo.Client, seeds []string, in, out string, n int) (done *atomic.Int64, stop func()) {
	t.Helper()
	var recs []*kgo.Record
	for i := 0; i < n; i++ {
		recs = append(recs, kgo.StringRecord(fmt.Sprintf("v%04d", i)))
	}
	produceSync(t, prod, recs...)
	done = new(atomic.Int64)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		runETL(ctx, t, seeds, in, out, done)
	}()
	stop = func() {
		cancel()
		wg.Wait()
	}
	t.Cleanup(stop)
	return done, stop
}

// runETL is the exactly-once loop of the ETL tests until ctx ends: a GroupTransactSession
// consumes in (read_committed) in small transactions, produces each value to out and commits
// the offsets with it; every fourth transaction aborts instead. done counts the input records
// of committed transactions.
//
// An End that fails ends the session and a new one takes over, as a real application must:
// franz-go documents that no End error is retryable, and an EndTxn cut off by the kill has an
// outcome the client cannot know (it keeps the transaction open and would refuse the next
// Begin). The new session's InitProducerID completes or aborts whatever the old one left at
// the coordinator, and its group join reads the offsets committed with it, so the output
// holds each input once either way.
func runETL(ctx context.Context, t *testing.T, seeds []string, in, out string, done *atomic.Int64) {
	for ctx.Err() == nil {
		err := runETLSession(ctx, seeds, in, out, done)
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			return
		}
		t.Logf("ETL session ended (%v); starting a new one", err)
	}
}

// runETLSession is one session of runETL, until ctx ends (nil) or End fails (its error).
func runETLSession(ctx context.Context, seeds []string, in, out string, done *atomic.Int64) error {
	s, err := kgo.NewGroupTransactSession(
		kgo.SeedBrokers(seeds...),
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
		return fmt.Errorf("new session: %w", err)
	}
	defer s.Close()
	for round := 0; ctx.Err() == nil; round++ {
		fs := s.PollRecords(ctx, 25) // small transactions, so a kill lands inside one
		if ctx.Err() != nil {
			return nil
		}
		if err := s.Begin(); err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		var batch []*kgo.Record
		fs.EachRecord(func(r *kgo.Record) { batch = append(batch, kgo.StringRecord(string(r.Value))) })
		// Synchronously, so an aborted transaction's records are in the log (an abort drops
		// what is still buffered).
		s.ProduceSync(ctx, batch...)
		end := kgo.TryCommit
		if round%4 == 3 {
			end = kgo.TryAbort
		}
		committed, err := s.End(ctx, end)
		if err != nil {
			return fmt.Errorf("end: %w", err)
		}
		if committed {
			done.Add(int64(len(batch)))
		}
	}
	return nil
}

// committedWatcher reads topic under read_committed from the start, record by record, for
// a test waiting until some values are there.
type committedWatcher struct {
	cl   *kgo.Client
	seen map[string]int
}

func watchCommitted(client func(...kgo.Opt) *kgo.Client, topic string) *committedWatcher {
	return &committedWatcher{seen: map[string]int{}, cl: client(kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))}
}

// distinct polls once (up to a short while) and returns how many distinct values were seen.
func (w *committedWatcher) distinct() int {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	w.cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { w.seen[string(r.Value)]++ })
	return len(w.seen)
}

// checkExactlyOnce reads out up to ends (sentinels last) under both isolation levels: under
// read_committed every input v0000… appears exactly once; under read_uncommitted more records
// show (aborted transactions reached the log, or the test proved nothing).
func checkExactlyOnce(t *testing.T, client func(...kgo.Opt) *kgo.Client, out string, ends map[int32]int64, n int) {
	t.Helper()
	got := values(consumeUntilWith(t, client, out, ends, kgo.FetchIsolationLevel(kgo.ReadCommitted())))
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
	if all := values(consumeUntilWith(t, client, out, ends)); len(all) <= n {
		t.Errorf("read_uncommitted shows %d records: no aborted transaction reached the log, the test proves nothing", len(all))
	}
}

// TestClusterExactlyOnceCoordinatorKilled is the ETL of TestExactlyOnceETLKilled on three
// brokers (topics of three replicas), killing with SIGKILL the broker that coordinates the
// transactional id (the leader of its __transaction_state partition) in the middle: the
// coordinator moves with the partition's leadership to a replica that replays the state, the
// markers reach partitions led elsewhere through WriteTxnMarkers, and every input is in the
// output exactly once under read_committed.
func TestClusterExactlyOnceCoordinatorKilled(t *testing.T) {
	c := startCluster3(t)
	in, out := topicName(t, "in"), topicName(t, "out")
	createRF3(t, c, in, 3)
	createRF3(t, c, out, 3)
	waitCluster(t, "__transaction_state created", func() error {
		_, _, err := partitionsOf(t, c.Broker(1), "__transaction_state")
		return err
	})
	const n = 600
	done, stop := startETL(t, c.ClientT(t, kgo.DefaultProduceTopic(in)), c.Addrs(), in, out, n)
	waitFor(t, clusterWait, "the loop committed a third of the input", func() bool { return done.Load() >= n/3 })
	coord := txnCoordinator(t, c, "etl-"+out)
	t.Logf("killing broker %d, the coordinator of etl-%s, after %d records", coord, out, done.Load())
	victim := c.Broker(int(coord))
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	client := func(o ...kgo.Opt) *kgo.Client { return c.ClientT(t, o...) }
	w := watchCommitted(client, out)
	waitFor(t, 2*clusterWait, "every input record in the output", func() bool { return w.distinct() >= n })
	stop()
	if now := txnCoordinator(t, c, "etl-"+out); now == coord {
		t.Fatalf("broker %d still coordinates etl-%s after its kill", now, out)
	}
	if err := victim.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	sealer := c.ClientT(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for p := int32(0); p < 3; p++ {
		produceSync(t, sealer, &kgo.Record{Topic: out, Partition: p, Value: []byte("sentinel")})
	}
	lo, err := c.AdminT(t).ListEndOffsets(ctxTimeout(t, opTimeout), out)
	if err != nil || lo.Error() != nil {
		t.Fatalf("end offsets of %s: %v %v", out, err, lo.Error())
	}
	ends := map[int32]int64{}
	lo.Each(func(o kadm.ListedOffset) { ends[o.Partition] = o.Offset })
	checkExactlyOnce(t, client, out, ends, n)
}

// txnCoordinator is the broker coordinating transactional id id (FindCoordinator key type 1).
func txnCoordinator(t *testing.T, c *cluster.Cluster, id string) int32 {
	t.Helper()
	cl := c.ClientT(t)
	var node int32
	waitCluster(t, "the coordinator of "+id, func() error {
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.CoordinatorType, req.CoordinatorKey = 1, id
		req.CoordinatorKeys = []string{id}
		resp, err := req.RequestWith(ctxTimeout(t, opTimeout), cl)
		if err != nil {
			return err
		}
		code, n := resp.ErrorCode, resp.NodeID
		if len(resp.Coordinators) > 0 {
			code, n = resp.Coordinators[0].ErrorCode, resp.Coordinators[0].NodeID
		}
		if err := kerr.ErrorForCode(code); err != nil {
			return err
		}
		node = n
		return nil
	})
	return node
}

// TestClusterTimeoutFencedEpochSurvivesFailover: a transaction left open past its timeout is
// aborted by its coordinator with an epoch bump; after the coordinator's broker is killed, the
// new coordinator (replaying __transaction_state) still lets the fenced producer re-initialize
// with its old epoch (KIP-360: InitProducerId with the producer id and epoch) and gives it the
// next one, instead of fencing it for good.
func TestClusterTimeoutFencedEpochSurvivesFailover(t *testing.T) {
	c := startCluster3(t)
	topic := topicName(t, "")
	createRF3(t, c, topic, 1)
	id := "tx-" + topic
	cl := c.ClientT(t)
	var pid int64
	waitCluster(t, "InitProducerId", func() error {
		req := kmsg.NewPtrInitProducerIDRequest()
		req.TransactionalID, req.TransactionTimeoutMillis = &id, 1000
		resp, err := req.RequestWith(ctxTimeout(t, opTimeout), cl)
		if err != nil {
			return err
		}
		if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
			return err
		}
		if resp.ProducerEpoch != 0 {
			return fmt.Errorf("epoch %d, want 0", resp.ProducerEpoch)
		}
		pid = resp.ProducerID
		return nil
	})
	waitCluster(t, "AddPartitionsToTxn", func() error {
		req := kmsg.NewPtrAddPartitionsToTxnRequest()
		req.Version = 3
		req.TransactionalID, req.ProducerID, req.ProducerEpoch = id, pid, 0
		rt := kmsg.NewAddPartitionsToTxnRequestTopic()
		rt.Topic, rt.Partitions = topic, []int32{0}
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctxTimeout(t, opTimeout), cl)
		if err != nil {
			return err
		}
		return kerr.ErrorForCode(resp.Topics[0].Partitions[0].ErrorCode)
	})
	aborted := func() error {
		described, err := c.AdminT(t).DescribeTransactions(ctxTimeout(t, opTimeout), id)
		if err != nil {
			return err
		}
		d := described[id]
		if d.Err != nil {
			return d.Err
		}
		if d.State != "CompleteAbort" || d.ProducerEpoch != 1 {
			return fmt.Errorf("%s at epoch %d, want CompleteAbort at epoch 1 (the timeout abort)", d.State, d.ProducerEpoch)
		}
		return nil
	}
	waitCluster(t, "the timeout abort", aborted)
	coord := txnCoordinator(t, c, id)
	if err := c.Broker(int(coord)).Kill(); err != nil {
		t.Fatal(err)
	}
	waitCluster(t, "a new coordinator of "+id, func() error {
		if now := txnCoordinator(t, c, id); now == coord {
			return fmt.Errorf("broker %d still coordinates %s", now, id)
		}
		return aborted()
	})
	waitCluster(t, "InitProducerId with the fenced epoch at the new coordinator", func() error {
		req := kmsg.NewPtrInitProducerIDRequest()
		req.Version = 4
		req.TransactionalID, req.TransactionTimeoutMillis = &id, 1000
		req.ProducerID, req.ProducerEpoch = pid, 0
		resp, err := req.RequestWith(ctxTimeout(t, opTimeout), cl)
		if err != nil {
			return err
		}
		if resp.ErrorCode == kerr.ProducerFenced.Code {
			t.Fatalf("the new coordinator fenced producer %d epoch 0 for good: the epoch its predecessor's timeout abort fenced was lost", pid)
		}
		if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
			return err
		}
		if resp.ProducerID != pid || resp.ProducerEpoch != 2 {
			t.Fatalf("InitProducerId with epoch 0 gave producer %d epoch %d, want %d epoch 2", resp.ProducerID, resp.ProducerEpoch, pid)
		}
		return nil
	})
}
