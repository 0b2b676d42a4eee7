package e2e

// The cluster soak's client loop (see TestClusterSoak): metadata work through whichever
// brokers are live while the nemesis runs, and the model of the topics it made, which the
// settled checks hold the cluster to.
//
// Errors are expected while brokers die and leaderships move; they are counted, never fatal.
// What matters is the outcome a client can rely on: a request answered with success (or, for
// a name only this loop uses, TOPIC_ALREADY_EXISTS: an earlier try of its own got through) is
// done; a refusal the broker makes before proposing anything (INVALID_REPLICATION_FACTOR with
// a broker down, ...) is not; anything else (a timeout, REQUEST_TIMED_OUT, NOT_CONTROLLER after
// the client's own retries, a lost connection) leaves the outcome unknown, as Kafka's protocol
// does: a Raft proposal that timed out may still commit. Unknown creates and deletes are tried
// again with the same name, which settles them.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	soakOpTimeout     = 20 * time.Second // one admin request, the client's retries included
	soakMaxTopics     = 10               // live topics the loop keeps at most
	soakMinTopics     = 3                // below this it creates rather than deletes
	soakMaxPartitions = 8                // a topic grows to at most this many partitions
	// soakOpInterval paces the loop: a few metadata changes a second keep the Raft log and the
	// controller busy without taking the two cores from the brokers.
	soakOpInterval = 250 * time.Millisecond
)

// modelTopic is what the client knows of one topic it asked for.
type modelTopic struct {
	name            string
	createAcked     bool // CreateTopics succeeded (or said it exists)
	createUnknown   bool // a CreateTopics with an unknown outcome, not settled since
	seen            bool // listed at a settled point: it was created, whatever the answers said
	deleteTried     bool // DeleteTopics sent at least once
	deleteAcked     bool // DeleteTopics succeeded
	gone            bool // once seen, then missing at a settled point
	partsAcked      int32
	partsMax        int32           // the largest count any request asked for, answered or not
	retention       map[string]bool // values retention.ms may have ("": no override)
	recordsAcked    int
	recordsRejected int
}

// live says the client may work on the topic: it exists and no delete was tried.
func (m *modelTopic) live() bool { return (m.createAcked || m.seen) && !m.deleteTried }

// soakModel is every topic the client asked for, in the order it named them.
type soakModel struct {
	topics []*modelTopic
	byName map[string]*modelTopic
}

func (m *soakModel) pick(rng *rand.Rand, want func(*modelTopic) bool) *modelTopic {
	var c []*modelTopic
	for _, t := range m.topics {
		if want(t) {
			c = append(c, t)
		}
	}
	if len(c) == 0 {
		return nil
	}
	return c[rng.IntN(len(c))]
}

func (m *soakModel) count(want func(*modelTopic) bool) int {
	n := 0
	for _, t := range m.topics {
		if want(t) {
			n++
		}
	}
	return n
}

// check holds the settled document d, with every broker back, to what the client was told.
// It returns the first violation; it also learns from d (topics seen, topics gone).
func (m *soakModel) check(d soakDoc) error {
	listed := map[string]soakTopic{}
	for _, t := range d.Topics {
		listed[t.Name] = t
		if _, ok := m.byName[t.Name]; !ok && !isInternalTopic(t.Name) {
			return fmt.Errorf("topic %s exists, but the client never asked for it", t.Name)
		}
	}
	for _, mt := range m.topics {
		t, present := listed[mt.name]
		switch {
		case present && mt.deleteAcked:
			return fmt.Errorf("topic %s exists after its DeleteTopics succeeded", mt.name)
		case present && mt.gone:
			return fmt.Errorf("topic %s is back after it was gone", mt.name)
		case !present && mt.createAcked && !mt.deleteTried:
			return fmt.Errorf("topic %s is missing: its CreateTopics succeeded and no DeleteTopics was sent", mt.name)
		case !present && mt.seen && !mt.deleteTried:
			return fmt.Errorf("topic %s is missing: it existed and no DeleteTopics was sent", mt.name)
		case !present:
			mt.gone = mt.gone || mt.seen
			continue
		}
		mt.seen = true
		n := int32(len(t.Partitions))
		if n < mt.partsAcked || n > mt.partsMax {
			return fmt.Errorf("topic %s has %d partitions; CreateTopics/CreatePartitions succeeded up to %d and asked for at most %d",
				mt.name, n, mt.partsAcked, mt.partsMax)
		}
		if v := t.Configs["retention.ms"]; !mt.retention[v] {
			return fmt.Errorf("topic %s has retention.ms %q; the client's requests allow only %v", mt.name, v, mt.retention)
		}
		for _, p := range t.Partitions {
			if len(p.Replicas) != 3 {
				return fmt.Errorf("%s-%d has replicas %v; the client asked for 3", mt.name, p.Partition, p.Replicas)
			}
		}
	}
	return nil
}

func isInternalTopic(name string) bool { return name == OffsetsTopicName }

// clientStats counts what the client did and was told.
type clientStats struct {
	ops                                   int
	created, createRefused, createUnknown int
	deleted, deleteUnknown                int
	grown, growRefused, growUnknown       int
	altered, alterRefused, alterUnknown   int
	recordsAcked, recordsFailed           int
	errors                                map[string]int // "operation: error" → how many
}

// countErr counts an error op was answered with, by its Kafka error name when it has one.
func (st *clientStats) countErr(op string, err error) {
	what := err.Error()
	var ke *kerr.Error
	switch {
	case errors.As(err, &ke):
		what = ke.Message
	case errors.Is(err, context.DeadlineExceeded):
		what = "timed out"
	case len(what) > 60:
		what = what[:60] + "…"
	}
	st.errors[op+": "+what]++
}

// soakClient runs the client loop. Its model and stats are guarded by the soak's pause lock,
// read-held for each operation: the settled checks take it for writing, so they see no
// request in flight and the model does not move under them.
type soakClient struct {
	s     *soak
	rng   *rand.Rand
	adm   *kadm.Client
	prod  *kgo.Client
	model *soakModel
	stats clientStats
	named int
	ops   atomic.Int64 // operations finished, for the nemesis's gaps
	stop  context.CancelFunc
	wg    sync.WaitGroup
}

// startClient starts the client loop with its own random source (drawn from the seed).
func (s *soak) startClient() *soakClient {
	seeds := s.c.Addrs()
	opts := []kgo.Opt{kgo.SeedBrokers(seeds...), kgo.MetadataMinAge(250 * time.Millisecond),
		kgo.RequestTimeoutOverhead(5 * time.Second), kgo.RetryTimeout(soakOpTimeout)}
	adm, err := kgo.NewClient(opts...)
	if err != nil {
		s.t.Fatal(err)
	}
	// Not idempotent: without replicated partition data a new leader has none of the old
	// leader's producer state, and the soak is about metadata; acks=all still waits for the
	// ISR the leader knows. The delivery timeout bounds a record while its leader is away.
	prod, err := kgo.NewClient(append(opts, kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DisableIdempotentWrite(),
		kgo.RecordDeliveryTimeout(15*time.Second), kgo.RecordPartitioner(kgo.RoundRobinPartitioner()))...)
	if err != nil {
		adm.Close()
		s.t.Fatal(err)
	}
	c := &soakClient{s: s, rng: rand.New(rand.NewPCG(s.seed, 2)), adm: kadm.NewClient(adm), prod: prod,
		model: &soakModel{byName: map[string]*modelTopic{}}, stats: clientStats{errors: map[string]int{}}}
	ctx, cancel := context.WithCancel(context.Background())
	c.stop = cancel
	c.wg.Add(1)
	go c.run(ctx)
	return c
}

// close stops the loop (the operation in flight ends with its timeout) and the clients.
func (c *soakClient) close() {
	c.stop()
	c.wg.Wait()
	c.prod.Close()
	c.adm.Close()
}

func (c *soakClient) run(ctx context.Context) {
	defer c.wg.Done()
	tick := time.NewTicker(soakOpInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		c.s.pause.RLock()
		c.op(ctx)
		c.stats.ops++
		c.s.pause.RUnlock()
		c.ops.Add(1)
	}
}

// op picks and runs one operation. Every pick is drawn from the client's random source; which
// topics it may pick from depends on earlier answers, so a seed repeats the choices exactly
// only as far as the answers repeat.
func (c *soakClient) op(ctx context.Context) {
	m, r := c.model, c.rng.IntN(100)
	unsettledCreate := func(t *modelTopic) bool { return t.createUnknown && !t.createAcked && !t.seen && !t.deleteTried }
	unsettledDelete := func(t *modelTopic) bool { return t.deleteTried && !t.deleteAcked && !t.gone }
	live := m.count((*modelTopic).live)
	switch {
	case r < 10 && m.count(unsettledCreate) > 0:
		c.create(ctx, m.pick(c.rng, unsettledCreate))
	case r < 20 && m.count(unsettledDelete) > 0:
		c.delete(ctx, m.pick(c.rng, unsettledDelete))
	case live < soakMinTopics || (r < 40 && live < soakMaxTopics):
		c.named++
		t := &modelTopic{name: "soak-" + strconv.Itoa(c.named), retention: map[string]bool{"": true}}
		m.topics = append(m.topics, t)
		m.byName[t.name] = t
		c.create(ctx, t)
	case r < 55:
		c.grow(ctx, m.pick(c.rng, (*modelTopic).live))
	case r < 70:
		c.alter(ctx, m.pick(c.rng, (*modelTopic).live))
	case r < 80 && live > soakMinTopics:
		c.delete(ctx, m.pick(c.rng, (*modelTopic).live))
	default:
		c.produce(ctx, m.pick(c.rng, (*modelTopic).live))
	}
}

// refusedBeforeProposing reports whether err is a refusal the broker makes before proposing
// anything: nothing changed.
func refusedBeforeProposing(err error) bool {
	return errors.Is(err, kerr.InvalidReplicationFactor) || errors.Is(err, kerr.InvalidPartitions) ||
		errors.Is(err, kerr.InvalidConfig) || errors.Is(err, kerr.InvalidRequest) || errors.Is(err, kerr.InvalidTopicException)
}

// create asks for t with 1–4 partitions of three replicas.
func (c *soakClient) create(ctx context.Context, t *modelTopic) {
	parts := int32(1 + c.rng.IntN(4))
	if t.partsMax > 0 {
		parts = t.partsMax // a retry asks for what the first try did
	}
	t.partsMax = max(t.partsMax, parts)
	ctx, cancel := context.WithTimeout(ctx, soakOpTimeout)
	defer cancel()
	resp, err := c.adm.CreateTopic(ctx, parts, 3, nil, t.name)
	if err == nil {
		err = resp.Err
	}
	if err == nil || errors.Is(err, kerr.TopicAlreadyExists) {
		t.createAcked, t.createUnknown = true, false
		t.partsAcked = max(t.partsAcked, parts)
		c.stats.created++
		return
	}
	c.stats.countErr("CreateTopics", err)
	if refusedBeforeProposing(err) {
		c.stats.createRefused++
		return
	}
	t.createUnknown = true
	c.stats.createUnknown++
}

// delete deletes t; UNKNOWN_TOPIC_OR_PARTITION is no proof (an earlier try, or the client's
// own retry of this one, may have deleted it), so only success counts as done.
func (c *soakClient) delete(ctx context.Context, t *modelTopic) {
	t.deleteTried = true
	ctx, cancel := context.WithTimeout(ctx, soakOpTimeout)
	defer cancel()
	if _, err := c.adm.DeleteTopic(ctx, t.name); err == nil {
		t.deleteAcked = true
		c.stats.deleted++
	} else {
		c.stats.countErr("DeleteTopics", err)
		c.stats.deleteUnknown++
	}
}

// grow asks for one or two more partitions than t was ever asked to have.
func (c *soakClient) grow(ctx context.Context, t *modelTopic) {
	add := int32(1 + c.rng.IntN(2))
	if t == nil || t.partsMax+add > soakMaxPartitions {
		return
	}
	want := t.partsMax + add
	t.partsMax = want
	ctx, cancel := context.WithTimeout(ctx, soakOpTimeout)
	defer cancel()
	resp, err := c.adm.UpdatePartitions(ctx, int(want), t.name)
	if err == nil {
		_, err = resp.On(t.name, func(r *kadm.CreatePartitionsResponse) error { return r.Err })
	}
	if err == nil {
		t.partsAcked = max(t.partsAcked, want)
		c.stats.grown++
		return
	}
	c.stats.countErr("CreatePartitions", err)
	if refusedBeforeProposing(err) {
		c.stats.growRefused++
		return
	}
	c.stats.growUnknown++
}

// alter sets t's retention.ms to a value drawn at random.
func (c *soakClient) alter(ctx context.Context, t *modelTopic) {
	v := strconv.Itoa((1 + c.rng.IntN(1000)) * 60000)
	if t == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, soakOpTimeout)
	defer cancel()
	rs, err := c.adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: &v}}, t.name)
	if err == nil {
		_, err = rs.On(t.name, func(r *kadm.AlterConfigsResponse) error { return r.Err })
	}
	if err == nil {
		t.retention = map[string]bool{v: true}
		c.stats.altered++
		return
	}
	c.stats.countErr("IncrementalAlterConfigs", err)
	if refusedBeforeProposing(err) {
		c.stats.alterRefused++
		return
	}
	t.retention[v] = true
	c.stats.alterUnknown++
}

// produce writes 1–5 records to t with acks=all.
func (c *soakClient) produce(ctx context.Context, t *modelTopic) {
	n := 1 + c.rng.IntN(5)
	if t == nil {
		return
	}
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: t.name, Value: []byte(fmt.Sprintf("soak %d/%d", c.stats.ops, i))}
	}
	for _, r := range c.prod.ProduceSync(ctx, recs...) {
		if r.Err == nil {
			t.recordsAcked++
			c.stats.recordsAcked++
		} else {
			t.recordsRejected++
			c.stats.recordsFailed++
			c.stats.countErr("Produce", r.Err)
		}
	}
}

// waitOps waits until the client has finished n more operations, or limit passes (a loop
// stuck on unanswered requests is the checks' business, not the gap's).
func (c *soakClient) waitOps(n int, limit time.Duration) {
	target := c.ops.Load() + int64(n)
	deadline := time.Now().Add(limit)
	for c.ops.Load() < target && time.Now().Before(deadline) {
		c.s.checkProcesses()
		time.Sleep(soakPoll)
	}
}

// summary is the client's part of the soak's summary.
func (c *soakClient) summary() []string {
	st, m := c.stats, c.model
	unknownTopics := m.count(func(t *modelTopic) bool { return !t.createAcked && !t.seen && t.createUnknown })
	var errs []string
	for what, n := range st.errors {
		errs = append(errs, fmt.Sprintf("%s ×%d", what, n))
	}
	slices.Sort(errs)
	return []string{
		fmt.Sprintf("client: %d operations; topics named %d, created %d (refused %d, unknown outcome %d, %d of them never seen), deleted %d (unknown %d), %d live at the end",
			st.ops, len(m.topics), st.created, st.createRefused, st.createUnknown, unknownTopics, st.deleted, st.deleteUnknown,
			m.count((*modelTopic).live)),
		fmt.Sprintf("client: CreatePartitions done %d (refused %d, unknown %d); retention.ms altered %d (refused %d, unknown %d); records acked %d, failed %d",
			st.grown, st.growRefused, st.growUnknown, st.altered, st.alterRefused, st.alterUnknown, st.recordsAcked, st.recordsFailed),
		"client: errors: " + strings.Join(errs, "; "),
	}
}
