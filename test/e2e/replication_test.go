package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ringtail/ringtail/test/cluster"
)

// Replication between three broker processes: acks=all records survive the kill -9 of their
// leader, a restarted follower catches up and rejoins the ISR, and a partition whose ISR is
// smaller than min.insync.replicas refuses acks=all up front.

// createReplicated creates topic with partitions partitions of three replicas and the given
// min.insync.replicas.
func createReplicated(t *testing.T, c *cluster.Cluster, topic string, partitions int32, minISR int) {
	t.Helper()
	adm, err := c.Admin()
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	minISRs := fmt.Sprint(minISR)
	resp, err := adm.CreateTopic(ctxTimeout(t, opTimeout), partitions, 3, map[string]*string{"min.insync.replicas": &minISRs}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create %s: %v %s", topic, err, resp.ErrMessage)
	}
	waitTopicEverywhere(t, c, topic, partitions)
}

// waitTopicISR waits until broker b reports every partition of topic with exactly the ISR isr.
func waitTopicISR(t *testing.T, b *cluster.Broker, topic string, isr []int32) time.Duration {
	t.Helper()
	return waitCluster(t, fmt.Sprintf("every partition of %s with ISR %v", topic, isr), func() error {
		ps, _, err := partitionsOf(t, b, topic)
		if err != nil {
			return err
		}
		if len(ps) == 0 {
			return fmt.Errorf("no partitions")
		}
		for p, pv := range ps {
			got := slices.Clone(pv.isr)
			slices.Sort(got)
			if !slices.Equal(got, isr) || pv.leader < 0 {
				return fmt.Errorf("partition %d: leader %d, ISR %v", p, pv.leader, pv.isr)
			}
		}
		return nil
	})
}

// killFollower waits for every replica of topic's partition 0 to be in sync, kills one follower
// and waits until the leader's ISR has dropped it; it returns the leader and the killed broker.
func killFollower(t *testing.T, c *cluster.Cluster, topic string) (leader, away int32) {
	t.Helper()
	waitTopicISR(t, c.Broker(1), topic, []int32{1, 2, 3})
	ps, _, err := partitionsOf(t, c.Broker(1), topic)
	if err != nil {
		t.Fatal(err)
	}
	leader = ps[0].leader
	away = leader%3 + 1
	if err := c.Broker(int(away)).Kill(); err != nil {
		t.Fatal(err)
	}
	waitTopicISR(t, c.Broker(int(leader)), topic, without([]int32{1, 2, 3}, away))
	return leader, away
}

type ackedRecord struct {
	partition int32
	offset    int64
}

// produceAcked produces n records with acks=all (the client retries through leader changes)
// and returns where each value was acknowledged.
func produceAcked(t *testing.T, cl *kgo.Client, topic, prefix string, n int) map[string]ackedRecord {
	t.Helper()
	acked := make(map[string]ackedRecord, n)
	ctx, cancel := context.WithTimeout(context.Background(), 2*clusterWait)
	defer cancel()
	for i := 0; i < n; i += 50 {
		var rs []*kgo.Record
		for j := i; j < min(i+50, n); j++ {
			rs = append(rs, &kgo.Record{Topic: topic, Value: []byte(fmt.Sprintf("%s-%d", prefix, j))})
		}
		for _, r := range cl.ProduceSync(ctx, rs...) {
			if r.Err != nil {
				t.Fatalf("produce %s: %v", r.Record.Value, r.Err)
			}
			acked[string(r.Record.Value)] = ackedRecord{r.Record.Partition, r.Record.Offset}
		}
	}
	return acked
}

// readAllFrom consumes every partition of topic from its log start up to its end as listed now,
// and returns value → where it was read (failing on a value read twice).
func readAllFrom(t *testing.T, c *cluster.Cluster, topic string) map[string]ackedRecord {
	t.Helper()
	adm, err := c.Admin()
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	var starts, ends kadm.ListedOffsets
	waitCluster(t, "the start and end offsets of "+topic, func() error {
		if starts, err = adm.ListStartOffsets(ctxTimeout(t, opTimeout), topic); err == nil {
			err = starts.Error()
		}
		if err != nil {
			return err
		}
		ends, err = adm.ListEndOffsets(ctxTimeout(t, opTimeout), topic)
		if err == nil {
			err = ends.Error()
		}
		return err
	})
	cl, err := c.Client(kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := map[string]ackedRecord{}
	remaining := 0
	ends.Each(func(o kadm.ListedOffset) {
		remaining += int(o.Offset)
		if st, ok := starts.Lookup(topic, o.Partition); ok {
			remaining -= int(st.Offset)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), clusterWait)
	defer cancel()
	for remaining > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("reading %s: %d records not read", topic, remaining)
		}
		fs.EachError(func(tp string, p int32, err error) { t.Logf("fetch %s-%d: %v", tp, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			if prev, dup := got[string(r.Value)]; dup {
				t.Errorf("value %s at %d/%d and again at %d/%d", r.Value, prev.partition, prev.offset, r.Partition, r.Offset)
			}
			got[string(r.Value)] = ackedRecord{r.Partition, r.Offset}
			if end, ok := ends.Lookup(topic, r.Partition); ok && r.Offset < end.Offset {
				remaining--
			}
		})
	}
	return got
}

// checkAcked fails for every acknowledged value not read back at its acknowledged place.
func checkAcked(t *testing.T, acked, read map[string]ackedRecord) {
	t.Helper()
	lost := 0
	for v, at := range acked {
		if got, ok := read[v]; !ok || got != at {
			if lost < 10 {
				t.Errorf("acknowledged %s at %d/%d, read back at %+v (found: %v)", v, at.partition, at.offset, got, ok)
			}
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged records not read back where they were acknowledged", lost, len(acked))
	}
}

// TestReplicationLeaderKill: acks=all records acknowledged before and after the kill -9 of a
// partition leader are all read back at their offsets, once a follower has taken over; the
// killed broker, restarted, catches up and is back in every ISR.
func TestReplicationLeaderKill(t *testing.T) {
	c := startCluster3(t)
	topic := topicName(t, "")
	createReplicated(t, c, topic, 3, 2)
	waitTopicISR(t, c.Broker(1), topic, []int32{1, 2, 3})

	cl, err := c.Client(kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	acked := produceAcked(t, cl, topic, "before", 300)

	ps, _, err := partitionsOf(t, c.Broker(1), topic)
	if err != nil {
		t.Fatal(err)
	}
	victim := ps[0].leader
	t.Logf("kill -9 of broker %d, leader of partition 0", victim)
	if err := c.Broker(int(victim)).Kill(); err != nil {
		t.Fatal(err)
	}
	alive := c.Broker(int(victim)%3 + 1)
	start := time.Now()
	maps := produceAcked(t, cl, topic, "after", 300)
	t.Logf("300 records acknowledged %v after the kill", time.Since(start).Round(time.Millisecond))
	for v, at := range maps {
		acked[v] = at
	}
	checkAcked(t, acked, readAllFrom(t, c, topic))

	if err := c.Broker(int(victim)).Restart(ctxTimeout(t, clusterWait)); err != nil {
		t.Fatal(err)
	}
	took := waitTopicISR(t, alive, topic, []int32{1, 2, 3})
	t.Logf("broker %d back in every ISR %v after its restart", victim, took.Round(time.Millisecond))
	more := produceAcked(t, cl, topic, "rejoined", 100)
	for v, at := range more {
		acked[v] = at
	}
	checkAcked(t, acked, readAllFrom(t, c, topic))
}

// TestReplicationNotEnoughReplicas: with min.insync.replicas=3, a partition that lost a
// follower from its ISR refuses acks=all with NOT_ENOUGH_REPLICAS and nothing is appended,
// while acks=1 is still taken; once the follower is back in the ISR, acks=all works again.
func TestReplicationNotEnoughReplicas(t *testing.T) {
	c := startCluster3(t)
	topic := topicName(t, "")
	createReplicated(t, c, topic, 1, 3)
	leader, follower := killFollower(t, c, topic)
	leaderBroker := c.Broker(int(leader))

	rc := dialRaw(t, leaderBroker.Addr())
	defer rc.Close()
	code, _ := rawProduce(t, rc, 7, topic, 0, encodeBatch(batchSpec{values: [][]byte{[]byte("refused")}}))
	if code != kerr.NotEnoughReplicas.Code {
		t.Fatalf("acks=all with ISR of 2 and min.insync.replicas 3: error %d, want NOT_ENOUGH_REPLICAS", code)
	}
	one, err := leaderBroker.Client(kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite(), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	if err := one.ProduceSync(ctxTimeout(t, opTimeout), &kgo.Record{Value: []byte("acks=1")}).FirstErr(); err != nil {
		t.Fatalf("acks=1 with a short ISR: %v", err)
	}

	// Lowering min.insync.replicas to the ISR's size lets acks=all through at once, without a
	// leader change.
	adm, err := c.Admin()
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	two := "2"
	if _, err := adm.AlterTopicConfigs(ctxTimeout(t, opTimeout), []kadm.AlterConfig{{Name: "min.insync.replicas", Value: &two}}, topic); err != nil {
		t.Fatal(err)
	}
	waitCluster(t, "acks=all taken with min.insync.replicas=2", func() error {
		if code, _ := rawProduce(t, rc, 7, topic, 0, encodeBatch(batchSpec{values: [][]byte{[]byte("min2")}})); code != 0 {
			return fmt.Errorf("error %d", code)
		}
		return nil
	})
	three := "3"
	if _, err := adm.AlterTopicConfigs(ctxTimeout(t, opTimeout), []kadm.AlterConfig{{Name: "min.insync.replicas", Value: &three}}, topic); err != nil {
		t.Fatal(err)
	}

	if err := c.Broker(int(follower)).Restart(ctxTimeout(t, clusterWait)); err != nil {
		t.Fatal(err)
	}
	waitTopicISR(t, leaderBroker, topic, []int32{1, 2, 3})
	// The leader answers Metadata from the metadata it has applied and takes its own ISR from
	// that metadata a moment later (broker.lead), so the first acks=all after the ISR shows
	// complete may still be refused up front, as a client would see it and retry (CI dry run at
	// 7e1071f). A refusal appends nothing; "refused" below must still be absent. Any other error
	// is a failure, not a reason to retry.
	waitCluster(t, "acks=all taken with the full ISR back", func() error {
		switch code, _ := rawProduce(t, rc, 7, topic, 0, encodeBatch(batchSpec{values: [][]byte{[]byte("taken")}})); code {
		case 0:
			return nil
		case kerr.NotEnoughReplicas.Code:
			return fmt.Errorf("error %d", code)
		default:
			t.Fatalf("acks=all with the full ISR back: error %d", code)
			return nil
		}
	})
	read := readAllFrom(t, c, topic)
	if _, ok := read["refused"]; ok {
		t.Fatal("a refused acks=all record was appended")
	}
	for _, v := range []string{"acks=1", "min2", "taken"} {
		if _, ok := read[v]; !ok {
			t.Fatalf("%q not read back", v)
		}
	}
}

// TestReplicationNewLeaderOffsetNotAvailable: a new leader whose high watermark is below its
// epoch start (it holds a record its ISR never committed) answers ListOffsets for the latest
// offset with OFFSET_NOT_AVAILABLE rather than an offset that may go back, and consumers do not
// see the uncommitted record; once the high watermark can move (min.insync.replicas lowered to
// the ISR it has), the latest offset and the record are served.
//
// Two replicas of the partition go down, so a fourth broker, not a voter of the metadata
// quorum, holds one of them: the three voters keep a majority with one of them killed.
func TestReplicationNewLeaderOffsetNotAvailable(t *testing.T) {
	c := startCluster3(t)
	addrs, err := cluster.FreeAddrs("127.0.0.1", 2)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(brokerBin, "cluster", "add-node", "--brokers", c.Broker(1).Addr(),
		"--id", "4", "--raft-addr", addrs[1], "--non-voting").CombinedOutput(); err != nil {
		t.Fatalf("cluster add-node: %v\n%s", err, out)
	}
	fourthAddrs, err := cluster.FreeAddrs("127.0.0.1", 1)
	if err != nil {
		t.Fatal(err)
	}
	fourth := cluster.StartBrokerT(t, cluster.BrokerConfig{ID: 4, Addr: addrs[0], Args: []string{
		"--node-id", "4", "--raft-addr", addrs[1], "--peers", cluster.Peers(c.Brokers(), "raft"),
		"--replication-listen", fourthAddrs[0], "--join", "--non-voting"}})
	waitBrokers(t, c, c.Broker(1), []int32{1, 2, 3, 4})
	broker := func(id int32) *cluster.Broker {
		if id == 4 {
			return fourth
		}
		return c.Broker(int(id))
	}

	topic := topicName(t, "")
	createReplicated(t, c, topic, 8, 3)
	// A partition the fourth broker follows: it goes first, then the leader; the third replica
	// (a voter) inherits.
	var part, leader, heir int32 = -1, -1, -1
	waitCluster(t, "every ISR complete", func() error {
		ps, _, err := partitionsOf(t, c.Broker(1), topic)
		if err != nil {
			return err
		}
		for p, pv := range ps {
			if len(pv.isr) != 3 || pv.leader < 0 {
				return fmt.Errorf("partition %d: leader %d, ISR %v", p, pv.leader, pv.isr)
			}
		}
		for p, pv := range ps {
			if pv.leader != 4 && slices.Contains(pv.isr, 4) {
				part, leader = p, pv.leader
				for _, r := range pv.isr {
					if r != 4 && r != leader {
						heir = r
					}
				}
				return nil
			}
		}
		return fmt.Errorf("no partition followed by broker 4: %+v", ps)
	})
	t.Logf("partition %d: leader %d, heir %d, broker 4 follows", part, leader, heir)

	all, err := c.Client(kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer all.Close()
	committed := map[string]ackedRecord{}
	for i := range 10 {
		r := &kgo.Record{Partition: part, Value: []byte(fmt.Sprintf("committed-%d", i))}
		if err := all.ProduceSync(ctxTimeout(t, opTimeout), r).FirstErr(); err != nil {
			t.Fatalf("acks=all: %v", err)
		}
		committed[string(r.Value)] = ackedRecord{r.Partition, r.Offset}
	}

	// With broker 4 gone the ISR (two) is below min.insync.replicas (three): the high
	// watermark stays, while an acks=1 record is appended and copied to the heir.
	if err := fourth.Kill(); err != nil {
		t.Fatal(err)
	}
	waitCluster(t, "broker 4 out of the ISR", func() error {
		ps, _, err := partitionsOf(t, broker(leader), topic)
		if err != nil {
			return err
		}
		if slices.Contains(ps[part].isr, 4) {
			return fmt.Errorf("ISR %v", ps[part].isr)
		}
		return nil
	})
	one, err := broker(leader).Client(kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite(),
		kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	pending := "uncommitted-by-acks-1"
	if err := one.ProduceSync(ctxTimeout(t, opTimeout), &kgo.Record{Partition: part, Value: []byte(pending)}).FirstErr(); err != nil {
		t.Fatalf("acks=1: %v", err)
	}
	segDir := filepath.Join(broker(heir).DataDir(), "logs", fmt.Sprintf("%s-%d", topic, part))
	waitCluster(t, fmt.Sprintf("broker %d to hold the acks=1 record", heir), func() error {
		segs, _ := filepath.Glob(filepath.Join(segDir, "*.log"))
		for _, s := range segs {
			if b, err := os.ReadFile(s); err == nil && bytes.Contains(b, []byte(pending)) {
				return nil
			}
		}
		return fmt.Errorf("not in %v", segs)
	})

	// The leader goes: the heir leads with the record above its high watermark.
	if err := broker(leader).Kill(); err != nil {
		t.Fatal(err)
	}
	hb := broker(heir)
	rc := dialRaw(t, hb.Addr())
	latest := func() (int16, int64) {
		req := kmsg.NewPtrListOffsetsRequest()
		req.Version = 4
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition = part
		rp.Timestamp = -1
		rp.CurrentLeaderEpoch = -1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp := rc.mustRoundTrip(t, req).(*kmsg.ListOffsetsResponse)
		p := resp.Topics[0].Partitions[0]
		return p.ErrorCode, p.Offset
	}
	var code int16
	waitCluster(t, fmt.Sprintf("broker %d answering ListOffsets as the leader", heir), func() error {
		if code, _ = latest(); code == kerr.NotLeaderForPartition.Code || code == kerr.UnknownTopicOrPartition.Code {
			return fmt.Errorf("error %d", code)
		}
		return nil
	})
	if code != kerr.OffsetNotAvailable.Code {
		t.Fatalf("latest offset from a new leader below its epoch start: error %d, want OFFSET_NOT_AVAILABLE", code)
	}
	// A consumer reads up to the high watermark: the committed records, not the pending one.
	readPart := func() (int64, map[string]ackedRecord) {
		p, recs := fetchedRecords(t, rc.mustRoundTrip(t, fetchReq(11, topic, part, 0, 0)).(*kmsg.FetchResponse))
		if p.ErrorCode != 0 {
			t.Fatalf("fetch from the new leader: error %d", p.ErrorCode)
		}
		got := map[string]ackedRecord{}
		for _, r := range recs {
			got[string(r.Value)] = ackedRecord{part, r.Offset}
		}
		return p.HighWatermark, got
	}
	hw, got := readPart()
	if _, seen := got[pending]; seen || hw != int64(len(committed)) {
		t.Fatalf("fetch from the new leader: high watermark %d (want %d), the uncommitted record read: %v", hw, len(committed), seen)
	}
	checkAcked(t, committed, got)

	// Its ISR is the heir alone now: min.insync.replicas 1 lets the high watermark pass the
	// record, and the latest offset is served.
	adm, err := hb.Admin()
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	oneISR := "1"
	if _, err := adm.AlterTopicConfigs(ctxTimeout(t, opTimeout), []kadm.AlterConfig{{Name: "min.insync.replicas", Value: &oneISR}}, topic); err != nil {
		t.Fatal(err)
	}
	waitCluster(t, "the latest offset past the record", func() error {
		code, off := latest()
		if code != 0 || off != int64(len(committed))+1 {
			return fmt.Errorf("error %d, offset %d", code, off)
		}
		return nil
	})
	if _, got := readPart(); got[pending].offset != int64(len(committed)) {
		at, ok := got[pending]
		t.Fatalf("the record, committed now, read at %+v (found %v), want offset %d", at, ok, len(committed))
	}
}

// TestReplicationFollowerBelowLogStart: a follower that was down while DeleteRecords moved the
// log start past its log end cannot continue its log; restarted, it empties it, copies from the
// leader's log start and is back in the ISR, and it serves the records when it leads.
func TestReplicationFollowerBelowLogStart(t *testing.T) {
	c := startCluster3(t)
	topic := topicName(t, "")
	createReplicated(t, c, topic, 1, 2)
	waitTopicISR(t, c.Broker(1), topic, []int32{1, 2, 3})
	ps, _, err := partitionsOf(t, c.Broker(1), topic)
	if err != nil {
		t.Fatal(err)
	}
	leader := ps[0].leader
	away := leader%3 + 1
	cl, err := c.Client(kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	produceAcked(t, cl, topic, "seen", 100)
	if err := c.Broker(int(away)).Kill(); err != nil {
		t.Fatal(err)
	}
	waitTopicISR(t, c.Broker(int(leader)), topic, without([]int32{1, 2, 3}, away))
	acked := produceAcked(t, cl, topic, "missed", 100)

	adm, err := c.Broker(int(leader)).Admin()
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	var offs kadm.Offsets
	offs.Add(kadm.Offset{Topic: topic, Partition: 0, At: 150})
	res, err := adm.DeleteRecords(ctxTimeout(t, opTimeout), offs)
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		t.Fatalf("DeleteRecords before 150: %v", err)
	}
	for v, at := range acked {
		if at.offset < 150 {
			delete(acked, v)
		}
	}

	if err := c.Broker(int(away)).Restart(ctxTimeout(t, clusterWait)); err != nil {
		t.Fatal(err)
	}
	waitTopicISR(t, c.Broker(int(leader)), topic, []int32{1, 2, 3})
	if log := c.Broker(int(away)).Log(); !strings.Contains(log, "emptying it to copy from there") {
		t.Fatalf("broker %d rejoined the ISR without restarting its log at the leader's log start", away)
	}
	more := produceAcked(t, cl, topic, "after", 50)
	for v, at := range more {
		acked[v] = at
	}

	// The restarted broker leads: it serves what the leader held from its log start on.
	if err := c.Broker(int(leader)).Kill(); err != nil {
		t.Fatal(err)
	}
	waitCluster(t, fmt.Sprintf("a leader other than broker %d", leader), func() error {
		ps, _, err := partitionsOf(t, c.Broker(int(away)), topic)
		if err != nil {
			return err
		}
		if ps[0].leader == leader || ps[0].leader < 0 {
			return fmt.Errorf("leader %d", ps[0].leader)
		}
		return nil
	})
	got := readAllFrom(t, c, topic)
	checkAcked(t, acked, got)
	for v, at := range got {
		if at.offset < 150 {
			t.Errorf("%s read at %d, below the log start 150", v, at.offset)
		}
	}
}

// TestReplicationLargeBatch: a record batch larger than a replication frame's span limit (a
// topic whose max.message.bytes is raised to 4 MiB) reaches both followers: with
// min.insync.replicas=3 an acks=all produce of a 2 MiB record is acknowledged, and after a
// kill -9 of its leader the new leader serves it.
func TestReplicationLargeBatch(t *testing.T) {
	c := startCluster3(t)
	topic := topicName(t, "")
	adm, err := c.Admin()
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	minISR, maxBytes := "3", fmt.Sprint(4<<20)
	resp, err := adm.CreateTopic(ctxTimeout(t, opTimeout), 1, 3,
		map[string]*string{"min.insync.replicas": &minISR, "max.message.bytes": &maxBytes}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create %s: %v", topic, err)
	}
	waitTopicEverywhere(t, c, topic, 1)
	waitTopicISR(t, c.Broker(1), topic, []int32{1, 2, 3})

	cl, err := c.Client(kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerBatchMaxBytes(4<<20), kgo.DefaultProduceTopic(topic),
		kgo.ProducerBatchCompression(kgo.NoCompression())) // the batch is as large as the record
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	value := make([]byte, 2<<20)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	acked := map[string]ackedRecord{}
	for i := range 2 {
		v := append([]byte(fmt.Sprintf("%d-", i)), value...)
		r, err := cl.ProduceSync(ctxTimeout(t, 2*clusterWait), &kgo.Record{Value: v}).First()
		if err != nil {
			t.Fatalf("acks=all produce of a %d-byte record: %v", len(v), err)
		}
		acked[string(v)] = ackedRecord{r.Partition, r.Offset}
	}

	// Two replicas left must be enough for the new leader's high watermark to move.
	two := "2"
	if rs, err := adm.AlterTopicConfigs(ctxTimeout(t, opTimeout),
		[]kadm.AlterConfig{{Op: kadm.SetConfig, Name: "min.insync.replicas", Value: &two}}, topic); err != nil || rs[0].Err != nil {
		t.Fatalf("min.insync.replicas=2: %v %v", err, rs)
	}
	ps, _, err := partitionsOf(t, c.Broker(1), topic)
	if err != nil {
		t.Fatal(err)
	}
	victim := ps[0].leader
	t.Logf("kill -9 of broker %d, the leader", victim)
	if err := c.Broker(int(victim)).Kill(); err != nil {
		t.Fatal(err)
	}
	checkAcked(t, acked, readAllFrom(t, c, topic))
}
