package e2e

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ringtail/ringtail/group"
)

// TestInternalTopicsCompacted: __consumer_offsets and __transaction_state are
// cleanup.policy=compact topics the log cleaner compacts like any other. Many offsets are
// committed (a group deleted and an offset deleted among them) and transactions committed under
// a few transactional ids; with delete.retention.ms 0 on both topics, the cleaner compacts the
// partitions holding them and drops the tombstones; after a restart, the groups' last offsets
// are back, the deleted ones are not, and every transactional id has the producer id and epoch
// it had.
func TestInternalTopicsCompacted(t *testing.T) {
	b := startBroker(t, withArgs("--segment-bytes", fmt.Sprint(1<<20), "--log-cleaner-backoff", "200ms",
		"--offsets-topic-partitions", "1"))
	adm := b.Admin(t)
	const topic, groups, partitions = "compacted-commits", 3, 4
	createTopic(t, adm, topic, partitions, nil)
	fast := func(internal string) {
		t.Helper()
		// Segments roll by age too (segment.ms), so the transaction log, whose records are
		// small, seals some: the cleaner rewrites only sealed segments.
		res, err := adm.AlterTopicConfigs(ctxTimeout(t, opTimeout), []kadm.AlterConfig{
			{Name: "delete.retention.ms", Value: strp("0")},
			{Name: "segment.ms", Value: strp("300")},
		}, internal)
		if err == nil {
			_, err = res.On(internal, nil)
		}
		if err != nil {
			t.Fatalf("altering %s: %v", internal, err)
		}
	}
	fast("__consumer_offsets")

	commit := func(group string, at int64, parts ...int32) {
		t.Helper()
		offs := make(kadm.Offsets)
		for _, p := range parts {
			// Metadata padding makes the log roll segments by size as well.
			offs.Add(kadm.Offset{Topic: topic, Partition: p, At: at + int64(p), LeaderEpoch: -1,
				Metadata: strings.Repeat("m", 1000)})
		}
		res, err := adm.CommitOffsets(ctxTimeout(t, opTimeout), group, offs)
		if err != nil || res.Error() != nil {
			t.Fatalf("commit %s at %d: %v / %v", group, at, err, res.Error())
		}
	}
	all := []int32{0, 1, 2, 3}
	commit("doomed", 7, all...)
	if res, err := adm.DeleteGroups(ctxTimeout(t, opTimeout), "doomed"); err != nil || res.Error() != nil {
		t.Fatalf("delete group: %v / %v", err, res.Error())
	}
	commit("trimmed", 11, all...)
	dels := kadm.TopicsSet{}
	dels.Add(topic, 0)
	if res, err := adm.DeleteOffsets(ctxTimeout(t, opTimeout), "trimmed", dels); err != nil || res.Error() != nil {
		t.Fatalf("delete offset: %v / %v", err, res.Error())
	}

	// Transactions: each id commits several, so its state is written many times over.
	txnIDs := []string{"compacted-tx-a", "compacted-tx-b", "compacted-tx-c"}
	txnTopic := topicName(t, "txn-out")
	createTopic(t, adm, txnTopic, 1, nil)
	for i, id := range txnIDs {
		cl := b.Client(t, kgo.TransactionalID(id), kgo.DefaultProduceTopic(txnTopic))
		for n := 0; n < 12; n++ {
			if err := cl.BeginTransaction(); err != nil {
				t.Fatal(err)
			}
			if err := cl.ProduceSync(ctxTimeout(t, opTimeout), kgo.StringRecord(fmt.Sprintf("%s-%d", id, n))).FirstErr(); err != nil {
				t.Fatal(err)
			}
			if err := cl.EndTransaction(ctxTimeout(t, opTimeout), kgo.TryCommit); err != nil {
				t.Fatal(err)
			}
			if i == 0 && n == 0 {
				fast("__transaction_state") // created by the first transactional FindCoordinator
			}
			time.Sleep(50 * time.Millisecond) // spreads the records over segments aged by segment.ms
		}
		cl.Close()
	}
	describe := func(a *kadm.Client) kadm.DescribedTransactions {
		t.Helper()
		d, err := a.DescribeTransactions(ctxTimeout(t, opTimeout), txnIDs...)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	before := describe(adm)

	const rounds = 250 // 250 × 3 commits × 4 partitions ≈ 3,000 records, 3 MB: several segments
	for i := int64(1); i <= rounds; i++ {
		for g := range groups {
			commit(fmt.Sprintf("g%d", g), i*100, all...)
		}
	}

	// Wait for a pass over __consumer_offsets-0 and each partition holding a transactional id,
	// then until reading __consumer_offsets from the start meets none of the deleted group's
	// records (tombstones included) and far fewer records than were written.
	wanted := []string{"__consumer_offsets-0"}
	for _, id := range txnIDs {
		wanted = append(wanted, fmt.Sprintf("__transaction_state-%d", group.PartitionFor(id, 50)))
	}
	for _, name := range wanted {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		err := b.WaitLog(ctx, 0, "partition="+name+" why=")
		cancel()
		if err != nil {
			t.Fatalf("no cleaner pass over %s: %v; broker log:\n%s", name, err, tail(b.Log(), 4000))
		}
	}
	written := 4 + 4 + 1 + rounds*groups*len(all)
	var read []*kgo.Record
	// A pass keeps the tombstones it meets and stamps their delete horizon (KIP-534); a later
	// pass removes them, and a pass needs new dirty records. When the first pass came after
	// the last round (a slow machine), nothing else would dirty the log: a group nobody checks
	// keeps committing meanwhile, as the other groups of a live cluster would.
	filler := int64(0)
	if !holdsWithin(60*time.Second, func() bool {
		filler++
		commit("filler", filler*100, all...)
		read = consumeAll(t, b, "__consumer_offsets")[0]
		for _, r := range read {
			if bytes.Contains(r.Key, []byte("doomed")) {
				return false
			}
		}
		return len(read) < written/4
	}) {
		t.Fatalf("__consumer_offsets still holds %d records (of %d written) or the deleted group's; broker log:\n%s",
			len(read), written, tail(b.Log(), 4000))
	}

	check := func(when string, a *kadm.Client) {
		t.Helper()
		for g := range groups {
			group := fmt.Sprintf("g%d", g)
			fetched, err := a.FetchOffsets(ctxTimeout(t, opTimeout), group)
			if err != nil {
				t.Fatalf("%s: FetchOffsets(%s): %v", when, group, err)
			}
			for _, p := range all {
				o, ok := fetched.Lookup(topic, p)
				if want := int64(rounds*100) + int64(p); !ok || o.Err != nil || o.At != want {
					t.Fatalf("%s: %s partition %d: %+v, want offset %d", when, group, p, o, want)
				}
			}
		}
		fetched, err := a.FetchOffsets(ctxTimeout(t, opTimeout), "trimmed")
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range all {
			o, ok := fetched.Lookup(topic, p)
			if want := 11 + int64(p); p == 0 && ok && o.At >= 0 || p > 0 && (!ok || o.At != want) {
				t.Fatalf("%s: trimmed partition %d: %+v (partition 0's offset was deleted, the others are %d+p)", when, p, o, 11)
			}
		}
		lg, err := a.ListGroups(ctxTimeout(t, opTimeout))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := lg["doomed"]; ok {
			t.Fatalf("%s: the deleted group is back", when)
		}
		if fetched, err = a.FetchOffsets(ctxTimeout(t, opTimeout), "doomed"); err != nil {
			t.Fatal(err)
		}
		if o, ok := fetched.Lookup(topic, 0); ok && o.At >= 0 {
			t.Fatalf("%s: the deleted group's offset is back: %+v", when, o)
		}
		for _, id := range txnIDs {
			got, err := describe(a).On(id, nil)
			want := before[id]
			if err != nil || got.Err != nil || got.ProducerID != want.ProducerID || got.ProducerEpoch != want.ProducerEpoch || got.State != want.State {
				t.Fatalf("%s: transactional id %s: %+v (%v), before the cleaning %+v", when, id, got, err, want)
			}
		}
	}
	check("after compaction", adm)
	b.Stop()
	b.Restart()
	check("after a restart", b.Admin(t))
}

// TestExpiredTransactionalIDCompacted: a transactional id idle past
// --transactional-id-expiration is forgotten with a tombstone in __transaction_state; with
// delete.retention.ms 0 the cleaner removes its records and then the tombstone, while another
// id of the same partition goes on committing; after a restart the expired id is still unknown
// (a new producer with it gets a new producer id), and the live one keeps its producer id.
func TestExpiredTransactionalIDCompacted(t *testing.T) {
	b := startBroker(t, withArgs("--segment-bytes", fmt.Sprint(1<<20), "--log-cleaner-backoff", "200ms",
		"--transactional-id-expiration", "10s")) // well past a restart, which the live id must outlast
	adm := b.Admin(t)
	out := topicName(t, "out")
	createTopic(t, adm, out, 1, nil)
	expiring := "expiring-tx"
	live := ""
	for i := 0; live == ""; i++ { // an id of the same __transaction_state partition
		if id := fmt.Sprintf("live-tx-%d", i); group.PartitionFor(id, 50) == group.PartitionFor(expiring, 50) {
			live = id
		}
	}
	transact := func(cl *kgo.Client, v string) {
		t.Helper()
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctxTimeout(t, opTimeout), kgo.StringRecord(v)).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := cl.EndTransaction(ctxTimeout(t, opTimeout), kgo.TryCommit); err != nil {
			t.Fatal(err)
		}
	}
	exp := b.Client(t, kgo.TransactionalID(expiring), kgo.DefaultProduceTopic(out))
	transact(exp, "e")
	res, err := adm.AlterTopicConfigs(ctxTimeout(t, opTimeout), []kadm.AlterConfig{
		{Name: "delete.retention.ms", Value: strp("0")},
		{Name: "segment.ms", Value: strp("300")},
	}, "__transaction_state")
	if err == nil {
		_, err = res.On("__transaction_state", nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	d, err := adm.DescribeTransactions(ctxTimeout(t, opTimeout), expiring)
	if err != nil {
		t.Fatal(err)
	}
	expiredPID := d[expiring].ProducerID
	exp.Close()

	lc := b.Client(t, kgo.TransactionalID(live), kgo.DefaultProduceTopic(out))
	holdsRecord := func(id string) bool {
		for _, r := range consumeAll(t, b, "__transaction_state")[group.PartitionFor(expiring, 50)] {
			if bytes.Contains(r.Key, []byte(id)) {
				return true
			}
		}
		return false
	}
	// The live id commits (rolling segments by age, which makes passes due) until no record of
	// the expired one, its tombstone included, is left.
	n := 0
	if !holdsWithin(90*time.Second, func() bool {
		transact(lc, fmt.Sprint(n))
		n++
		return !holdsRecord(expiring)
	}) {
		t.Fatalf("__transaction_state still holds records of the expired id after %d transactions of another; broker log:\n%s", n, tail(b.Log(), 4000))
	}
	d, err = adm.DescribeTransactions(ctxTimeout(t, opTimeout), live)
	if err != nil {
		t.Fatal(err)
	}
	livePID := d[live].ProducerID
	lc.Close()

	b.Stop()
	b.Restart()
	adm = b.Admin(t)
	d, err = adm.DescribeTransactions(ctxTimeout(t, opTimeout), live)
	if err != nil || d[live].ProducerID != livePID {
		t.Fatalf("the live id after a restart: %+v, %v (producer id %d before)", d[live], err, livePID)
	}
	again := b.Client(t, kgo.TransactionalID(expiring), kgo.DefaultProduceTopic(out))
	transact(again, "again")
	d, err = adm.DescribeTransactions(ctxTimeout(t, opTimeout), expiring)
	if err != nil || d[expiring].ProducerID == expiredPID {
		t.Fatalf("the expired id after a restart: %+v, %v; its old producer id was %d", d[expiring], err, expiredPID)
	}
}
