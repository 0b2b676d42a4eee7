package e2e

import (
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// metadataFor issues a Metadata request for one topic over cl and returns that topic's entry.
func metadataFor(t testing.TB, cl *kgo.Client, topic string, allowAutoCreate bool) kmsg.MetadataResponseTopic {
	t.Helper()
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	req.AllowAutoTopicCreation = allowAutoCreate
	resp, err := req.RequestWith(ctxTimeout(t, opTimeout), cl)
	if err != nil {
		t.Fatalf("metadata %s: %v", topic, err)
	}
	for _, mt := range resp.Topics {
		if mt.Topic != nil && *mt.Topic == topic {
			return mt
		}
	}
	t.Fatalf("metadata response has no entry for %q", topic)
	return kmsg.MetadataResponseTopic{}
}

// waitTopicReady polls metadata (without auto-creation) until topic exists without error.
func waitTopicReady(t testing.TB, cl *kgo.Client, topic string) kmsg.MetadataResponseTopic {
	t.Helper()
	deadline := time.Now().Add(opTimeout)
	for {
		mt := metadataFor(t, cl, topic, false)
		if mt.ErrorCode == 0 && len(mt.Partitions) > 0 {
			return mt
		}
		if time.Now().After(deadline) {
			t.Fatalf("topic %q not ready: error code %d, %d partitions", topic, mt.ErrorCode, len(mt.Partitions))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAutoCreateTopics: topics are created on produce and on metadata (allow_auto_topic_creation)
// with the configured partition count; never by a metadata request that does not allow it; and
// not at all with --auto-create-topics=false.
func TestAutoCreateTopics(t *testing.T) {
	t.Run("on", func(t *testing.T) {
		b := startBroker(t, withArgs("--num-partitions", "3"))
		cl := b.Client(t)

		// A metadata request that does not allow auto-creation leaves an unknown topic unknown.
		if mt := metadataFor(t, cl, "auto-not-allowed", false); mt.ErrorCode != kerr.UnknownTopicOrPartition.Code {
			t.Fatalf("metadata(allow=false) for unknown topic: error code %d, want %d", mt.ErrorCode, kerr.UnknownTopicOrPartition.Code)
		}

		// Metadata with allow_auto_topic_creation creates it.
		metadataFor(t, cl, "auto-meta", true)
		if mt := waitTopicReady(t, cl, "auto-meta"); len(mt.Partitions) != 3 {
			t.Fatalf("auto-created topic has %d partitions, want 3 (--num-partitions)", len(mt.Partitions))
		}

		// A produce request to an unknown topic creates it (raw produce: no metadata first).
		rc := dialRaw(t, b.Addr())
		v := pickVersion(t, apiVersions(t, b.Addr()), 0, 11)
		deadline := time.Now().Add(opTimeout)
		for {
			ec, _ := rawProduce(t, rc, v, "auto-produce", 0, encodeBatch(batchSpec{values: [][]byte{[]byte("x")}}))
			if ec == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("raw produce to a new topic: error code %d until the deadline", ec)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if mt := waitTopicReady(t, cl, "auto-produce"); len(mt.Partitions) != 3 {
			t.Fatalf("topic auto-created by produce has %d partitions, want 3", len(mt.Partitions))
		}

		// The franz-go path: a client that allows auto-creation produces to a new topic.
		produceSync(t, b.Client(t, kgo.AllowAutoTopicCreation()), &kgo.Record{Topic: "auto-kgo", Value: []byte("v")})
		if got := consumeAll(t, b, "auto-kgo"); countRecords(got) != 1 {
			t.Fatalf("auto-kgo: %d records, want 1", countRecords(got))
		}

		// Still nothing created behind our back.
		if mt := metadataFor(t, cl, "auto-not-allowed", false); mt.ErrorCode != kerr.UnknownTopicOrPartition.Code {
			t.Fatalf("topic auto-not-allowed exists after a metadata request that did not allow creation")
		}
	})

	t.Run("off", func(t *testing.T) {
		b := startBroker(t, withArgs("--auto-create-topics=false"))
		cl := b.Client(t, kgo.AllowAutoTopicCreation(), kgo.UnknownTopicRetries(2))
		err := cl.ProduceSync(ctxTimeout(t, opTimeout), &kgo.Record{Topic: "no-auto", Value: []byte("v")}).FirstErr()
		if !errors.Is(err, kerr.UnknownTopicOrPartition) {
			t.Fatalf("produce to unknown topic with auto-create off: err %v, want UNKNOWN_TOPIC_OR_PARTITION", err)
		}
		rc := dialRaw(t, b.Addr())
		v := pickVersion(t, apiVersions(t, b.Addr()), 0, 11)
		ec, _ := rawProduce(t, rc, v, "no-auto-raw", 0, encodeBatch(batchSpec{values: [][]byte{[]byte("x")}}))
		if ec != kerr.UnknownTopicOrPartition.Code {
			t.Fatalf("raw produce to unknown topic with auto-create off: error code %d, want %d", ec, kerr.UnknownTopicOrPartition.Code)
		}
		for _, topic := range []string{"no-auto", "no-auto-raw"} {
			if mt := metadataFor(t, cl, topic, true); mt.ErrorCode != kerr.UnknownTopicOrPartition.Code {
				t.Fatalf("metadata(allow=true) for %s with auto-create off: error code %d, want %d", topic, mt.ErrorCode, kerr.UnknownTopicOrPartition.Code)
			}
		}
		// Explicit creation still works.
		createTopic(t, b.Admin(t), "explicit", 1, nil)
		produceSync(t, cl, &kgo.Record{Topic: "explicit", Value: []byte("v")})
	})
}

func countRecords(m map[int32][]*kgo.Record) int {
	n := 0
	for _, rs := range m {
		n += len(rs)
	}
	return n
}

// TestListOffsets covers earliest, latest, by timestamp and max timestamp (-3).
func TestListOffsets(t *testing.T) {
	b := startBroker(t)
	adm := b.Admin(t)
	topic := "listoffsets"
	createTopic(t, adm, topic, 2, nil)

	// Ten single-record batches on partition 0 with known timestamps; record 5 has the largest.
	base := time.Now().Add(-24 * time.Hour).UnixMilli()
	ts := make([]int64, 10)
	cl := b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	for i := range ts {
		ts[i] = base + int64(i)*1000
		if i == 5 {
			ts[i] = base + 100_000
		}
		produceSync(t, cl, &kgo.Record{Topic: topic, Partition: 0, Value: []byte(strconv.Itoa(i)), Timestamp: time.UnixMilli(ts[i])})
	}
	ctx := ctxTimeout(t, opTimeout)

	start, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("ListStartOffsets: %v", err)
	}
	end, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatalf("ListEndOffsets: %v", err)
	}
	for p, want := range map[int32][2]int64{0: {0, 10}, 1: {0, 0}} {
		s, _ := start.Lookup(topic, p)
		e, _ := end.Lookup(topic, p)
		if s.Err != nil || e.Err != nil || s.Offset != want[0] || e.Offset != want[1] {
			t.Fatalf("partition %d: start %d (%v), end %d (%v); want %d, %d", p, s.Offset, s.Err, e.Offset, e.Err, want[0], want[1])
		}
	}

	for _, c := range []struct {
		milli  int64
		offset int64
	}{
		{base - 5000, 0},   // before everything: first record
		{base, 0},          // exact
		{base + 2500, 3},   // between 2 and 3
		{base + 4000, 4},   // exact
		{base + 6000, 5},   // record 5 (ts base+100s) is the first at or after
		{base + 50_000, 5}, // only record 5 qualifies
		{base + 100_000, 5},
		{base + 200_000, 10}, // nothing at or after: kadm reports the end offset
	} {
		lo, err := adm.ListOffsetsAfterMilli(ctx, c.milli, topic)
		if err != nil {
			t.Fatalf("ListOffsetsAfterMilli(%d): %v", c.milli-base, err)
		}
		o, _ := lo.Lookup(topic, 0)
		if o.Err != nil || o.Offset != c.offset {
			t.Fatalf("ListOffsetsAfterMilli(base%+d): offset %d (%v), want %d", c.milli-base, o.Offset, o.Err, c.offset)
		}
	}

	// Raw: by timestamp with no match returns -1; max timestamp (-3) returns record 5.
	v := pickVersion(t, apiVersions(t, b.Addr()), 2, 8)
	if v < 7 {
		t.Fatalf("broker supports ListOffsets up to v%d; max timestamp (-3) needs v7", v)
	}
	rc := dialRaw(t, b.Addr())
	list := func(p int32, ts int64) kmsg.ListOffsetsResponseTopicPartition {
		req := kmsg.NewPtrListOffsetsRequest()
		req.Version = v
		req.ReplicaID = -1
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition = p
		rp.Timestamp = ts
		rp.CurrentLeaderEpoch = -1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp := rc.mustRoundTrip(t, req).(*kmsg.ListOffsetsResponse)
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			t.Fatalf("ListOffsets response shape: %+v", resp.Topics)
		}
		return resp.Topics[0].Partitions[0]
	}
	if p := list(0, -3); p.ErrorCode != 0 || p.Offset != 5 || p.Timestamp != ts[5] {
		t.Fatalf("max timestamp: offset %d ts %d err %d; want offset 5 ts %d", p.Offset, p.Timestamp, p.ErrorCode, ts[5])
	}
	if p := list(1, -3); p.ErrorCode != 0 || p.Offset != -1 {
		t.Fatalf("max timestamp on an empty partition: offset %d ts %d err %d; want offset -1", p.Offset, p.Timestamp, p.ErrorCode)
	}
	// One batch of five records whose largest timestamp is the third's: -3 names that record,
	// not the batch's last offset (KIP-734).
	pv := pickVersion(t, apiVersions(t, b.Addr()), 0, 9)
	bt := encodeBatch(batchSpec{values: [][]byte{[]byte("a"), []byte("b"), []byte("c"), []byte("d"), []byte("e")},
		timestamp: base, tsDeltas: []int64{1, 2, 9000, 3, 4}})
	if code, off := rawProduce(t, rc, pv, topic, 1, bt); code != 0 || off != 0 {
		t.Fatalf("producing the five-record batch: code %d offset %d", code, off)
	}
	if p := list(1, -3); p.ErrorCode != 0 || p.Offset != 2 || p.Timestamp != base+9000 {
		t.Fatalf("max timestamp inside a batch: offset %d ts %d err %d; want offset 2 ts %d", p.Offset, p.Timestamp, p.ErrorCode, base+9000)
	}
	if p := list(0, base+200_000); p.ErrorCode != 0 || p.Offset != -1 {
		t.Fatalf("timestamp after every record: offset %d err %d; want -1", p.Offset, p.ErrorCode)
	}
	if p := list(0, base+2500); p.ErrorCode != 0 || p.Offset != 3 || p.Timestamp != ts[3] {
		t.Fatalf("by timestamp: offset %d ts %d err %d; want offset 3 ts %d", p.Offset, p.Timestamp, p.ErrorCode, ts[3])
	}
	if p := list(0, -2); p.ErrorCode != 0 || p.Offset != 0 {
		t.Fatalf("earliest (-2): offset %d err %d; want 0", p.Offset, p.ErrorCode)
	}
	if p := list(0, -1); p.ErrorCode != 0 || p.Offset != 10 {
		t.Fatalf("latest (-1): offset %d err %d; want 10", p.Offset, p.ErrorCode)
	}
	if p := list(7, -1); p.ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("ListOffsets for a partition that does not exist: error code %d, want %d", p.ErrorCode, kerr.UnknownTopicOrPartition.Code)
	}
}

// fetchReq builds a one-partition fetch.
func fetchReq(version int16, topic string, partition int32, offset int64, maxWaitMs int32) *kmsg.FetchRequest {
	fr := kmsg.NewPtrFetchRequest()
	fr.Version = version
	fr.ReplicaID = -1
	fr.MaxWaitMillis = maxWaitMs
	fr.MinBytes = 1
	fr.MaxBytes = 1 << 20
	fr.SessionEpoch = -1
	ft := kmsg.NewFetchRequestTopic()
	ft.Topic = topic
	fp := kmsg.NewFetchRequestTopicPartition()
	fp.Partition = partition
	fp.FetchOffset = offset
	fp.PartitionMaxBytes = 1 << 20
	fp.LogStartOffset = -1
	fp.CurrentLeaderEpoch = -1
	ft.Partitions = append(ft.Partitions, fp)
	fr.Topics = append(fr.Topics, ft)
	return fr
}

// fetchedRecords decodes the records of a one-partition fetch response.
func fetchedRecords(t testing.TB, resp *kmsg.FetchResponse) (kmsg.FetchResponseTopicPartition, []kgo.Record) {
	t.Helper()
	if resp.ErrorCode != 0 {
		t.Fatalf("fetch: top-level error code %d", resp.ErrorCode)
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("fetch: want 1 topic with 1 partition, got %d topics", len(resp.Topics))
	}
	p := resp.Topics[0].Partitions[0]
	var out []kgo.Record
	fp, _ := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{Topic: resp.Topics[0].Topic, Partition: p.Partition, KeepControlRecords: false}, &p, kgo.DefaultDecompressor(), nil)
	if fp.Err != nil {
		t.Fatalf("fetch: decoding partition: %v", fp.Err)
	}
	for _, r := range fp.Records {
		out = append(out, *r)
	}
	return p, out
}

// TestFetchMinBytes: a waiting fetch with MinBytes is not answered while less is there (the
// broker estimates from positions, which may count up to one index interval, 4 KiB, more than
// the batches hold), and is answered as soon as enough is, long before its MaxWait.
func TestFetchMinBytes(t *testing.T) {
	b := startBroker(t)
	topic := "minbytes"
	createTopic(t, b.Admin(t), topic, 1, nil)
	v := pickVersion(t, apiVersions(t, b.Addr()), 1, 12)
	if v < 4 {
		t.Fatalf("broker supports Fetch only up to v%d", v)
	}
	const (
		minBytes      = 16 << 10
		indexInterval = 4 << 10
	)
	rc := dialRaw(t, b.Addr())
	req := fetchReq(v, topic, 0, 0, 60_000)
	req.MinBytes = minBytes
	corr, err := rc.send(req)
	if err != nil {
		t.Fatalf("send fetch: %v", err)
	}
	cl := b.Client(t)
	// Values that do not compress, so the bytes stored are about the bytes produced.
	rng := rand.New(rand.NewPCG(1, 2))
	var produced int
	for produced < 24 {
		value := make([]byte, 1024)
		for i := range value {
			value[i] = byte(rng.Uint32())
		}
		produceSync(t, cl, &kgo.Record{Topic: topic, Value: value})
		produced++
	}
	r, err := rc.readResponse(fetchReq(v, topic, 0, 0, 0), v, corr, 30*time.Second)
	if err != nil {
		t.Fatalf("a fetch with MinBytes %d (MaxWait 60s) was not answered within 30s of %d KiB produced: %v", minBytes, produced, err)
	}
	p, recs := fetchedRecords(t, r.(*kmsg.FetchResponse))
	if p.ErrorCode != 0 || len(recs) == 0 || recs[0].Offset != 0 {
		t.Fatalf("fetch: error %d, %d records", p.ErrorCode, len(recs))
	}
	if n := len(p.RecordBatches); n < minBytes-indexInterval {
		t.Fatalf("a fetch with MinBytes %d was answered with %d bytes (%d records)", minBytes, n, len(recs))
	}
}

// TestFetchLongPoll: a waiting fetch returns the record produced while it waits; a fetch on an
// empty partition returns empty, without error, once its wait is over.
func TestFetchLongPoll(t *testing.T) {
	b := startBroker(t)
	topic := "longpoll"
	createTopic(t, b.Admin(t), topic, 1, nil)
	v := pickVersion(t, apiVersions(t, b.Addr()), 1, 12)
	if v < 4 {
		t.Fatalf("broker supports Fetch only up to v%d", v)
	}

	// Nothing to read: empty answer, no error.
	rc := dialRaw(t, b.Addr())
	resp := rc.mustRoundTrip(t, fetchReq(v, topic, 0, 0, 2000)).(*kmsg.FetchResponse)
	p, recs := fetchedRecords(t, resp)
	if p.ErrorCode != 0 || len(recs) != 0 || p.HighWatermark != 0 {
		t.Fatalf("empty fetch: error %d, %d records, high watermark %d; want 0, 0, 0", p.ErrorCode, len(recs), p.HighWatermark)
	}

	// A long wait (60s) is cut short by a produce: the record arrives well before the wait ends.
	cl := b.Client(t)
	corr, err := rc.send(fetchReq(v, topic, 0, 0, 60_000))
	if err != nil {
		t.Fatalf("send fetch: %v", err)
	}
	produceSync(t, cl, &kgo.Record{Topic: topic, Value: []byte("wake-up")})
	r, err := rc.readResponse(fetchReq(v, topic, 0, 0, 0), v, corr, 30*time.Second)
	if err != nil {
		t.Fatalf("long-poll fetch did not return the produced record within 30s of the produce (MaxWait 60s): %v", err)
	}
	p, recs = fetchedRecords(t, r.(*kmsg.FetchResponse))
	if p.ErrorCode != 0 || len(recs) != 1 || string(recs[0].Value) != "wake-up" || p.HighWatermark != 1 {
		t.Fatalf("long-poll fetch: error %d, %d records, high watermark %d; want the produced record", p.ErrorCode, len(recs), p.HighWatermark)
	}

	// MaxWaitMs=2000 at the end of the log with a produce while it waits: the record arrives,
	// in that fetch or (if the produce landed after the wait ended) in the next one.
	corr, err = rc.send(fetchReq(v, topic, 0, 1, 2000))
	if err != nil {
		t.Fatalf("send fetch: %v", err)
	}
	produceSync(t, cl, &kgo.Record{Topic: topic, Value: []byte("second")})
	r, err = rc.readResponse(fetchReq(v, topic, 0, 1, 0), v, corr, 30*time.Second)
	if err != nil {
		t.Fatalf("fetch with MaxWaitMs=2000: %v", err)
	}
	p, recs = fetchedRecords(t, r.(*kmsg.FetchResponse))
	if p.ErrorCode != 0 {
		t.Fatalf("fetch with MaxWaitMs=2000: error code %d", p.ErrorCode)
	}
	if len(recs) == 0 {
		resp = rc.mustRoundTrip(t, fetchReq(v, topic, 0, 1, 2000)).(*kmsg.FetchResponse)
		p, recs = fetchedRecords(t, resp)
	}
	if len(recs) != 1 || string(recs[0].Value) != "second" || recs[0].Offset != 1 {
		t.Fatalf("fetch at offset 1: %d records; want the record 'second' at offset 1", len(recs))
	}

	// Fetching past the end is OFFSET_OUT_OF_RANGE.
	resp = rc.mustRoundTrip(t, fetchReq(v, topic, 0, 100, 0)).(*kmsg.FetchResponse)
	if ec := resp.Topics[0].Partitions[0].ErrorCode; ec != kerr.OffsetOutOfRange.Code {
		t.Fatalf("fetch at offset 100 of 2: error code %d, want OFFSET_OUT_OF_RANGE", ec)
	}
}

// TestTopicAdmin covers CreateTopics, Metadata, DeleteTopics and DescribeConfigs.
func TestTopicAdmin(t *testing.T) {
	const nodeID = 7
	b := startBroker(t, withArgs("--node-id", strconv.Itoa(nodeID)))
	adm := b.Admin(t)
	ctx := ctxTimeout(t, 2*opTimeout)
	topic := "admin-topic"

	createTopic(t, adm, topic, 4, map[string]*string{"max.message.bytes": strp("2000000")})

	// Metadata: 4 partitions led by this node; the broker list has this node at our address.
	md, err := adm.Metadata(ctx, topic)
	if err != nil {
		t.Fatalf("metadata: %v", err)
	}
	td := md.Topics[topic]
	if td.Err != nil || len(td.Partitions) != 4 {
		t.Fatalf("metadata: topic err %v, %d partitions; want 4", td.Err, len(td.Partitions))
	}
	for _, p := range td.Partitions {
		if p.Err != nil || p.Leader != nodeID || len(p.Replicas) != 1 || p.Replicas[0] != nodeID {
			t.Fatalf("partition %d: err %v leader %d replicas %v; want leader %d", p.Partition, p.Err, p.Leader, p.Replicas, nodeID)
		}
	}
	host, port, _ := net.SplitHostPort(b.Addr())
	found := false
	for _, br := range md.Brokers {
		if br.NodeID == nodeID && br.Host == host && strconv.Itoa(int(br.Port)) == port {
			found = true
		}
	}
	if !found {
		t.Fatalf("metadata brokers %+v: want node %d at %s", md.Brokers, nodeID, b.Addr())
	}

	// Duplicate create.
	resp, err := adm.CreateTopic(ctx, 4, 1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if !errors.Is(err, kerr.TopicAlreadyExists) {
		t.Fatalf("duplicate create: %v, want TOPIC_ALREADY_EXISTS", err)
	}

	// DescribeConfigs: the override and a default.
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		t.Fatalf("DescribeTopicConfigs: %v", err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil || rc.Err != nil {
		t.Fatalf("DescribeTopicConfigs(%s): %v %v", topic, err, rc.Err)
	}
	cfgs := map[string]kadm.Config{}
	for _, c := range rc.Configs {
		cfgs[c.Key] = c
	}
	if c, ok := cfgs["max.message.bytes"]; !ok || c.MaybeValue() != "2000000" {
		t.Fatalf("topic config max.message.bytes = %q (present %v), want the override 2000000", c.MaybeValue(), ok)
	} else if c.Source != kmsg.ConfigSourceDynamicTopicConfig {
		t.Errorf("max.message.bytes source %v, want DYNAMIC_TOPIC_CONFIG", c.Source)
	}
	for _, key := range []string{"compression.type", "message.timestamp.type"} {
		if c, ok := cfgs[key]; !ok || c.MaybeValue() == "" {
			t.Errorf("topic config %s missing or empty", key)
		}
	}
	brs, err := adm.DescribeBrokerConfigs(ctx, nodeID)
	if err != nil {
		t.Fatalf("DescribeBrokerConfigs: %v", err)
	}
	if len(brs) != 1 || brs[0].Err != nil || len(brs[0].Configs) == 0 {
		t.Fatalf("DescribeBrokerConfigs(%d): %+v; want one resource with configs", nodeID, brs)
	}

	// An override is enforced: a record of 1.5 MB fits under 2000000 (default is ~1 MB).
	cl := b.Client(t, kgo.ProducerBatchMaxBytes(4<<20), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produceSync(t, cl, &kgo.Record{Topic: topic, Partition: 1, Value: make([]byte, 1_500_000)})
	produceSync(t, cl, &kgo.Record{Topic: topic, Partition: 0, Value: []byte("before-delete")})

	// Delete, then the topic is gone.
	dr, err := adm.DeleteTopics(ctx, topic)
	if err != nil || dr[topic].Err != nil {
		t.Fatalf("DeleteTopics: %v %v", err, dr[topic].Err)
	}
	cl2 := b.Client(t)
	deadline := time.Now().Add(opTimeout)
	for metadataFor(t, cl2, topic, false).ErrorCode != kerr.UnknownTopicOrPartition.Code {
		if time.Now().After(deadline) {
			t.Fatalf("topic still in metadata after delete")
		}
		time.Sleep(50 * time.Millisecond)
	}
	dr, err = adm.DeleteTopics(ctx, "never-existed")
	if err == nil {
		err = dr["never-existed"].Err
	}
	if !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("delete of an unknown topic: %v, want UNKNOWN_TOPIC_OR_PARTITION", err)
	}

	// Recreate with the same name: empty, new partition count, default configs.
	createTopic(t, adm, topic, 2, nil)
	adm = b.Admin(t) // a fresh client: franz-go caches the old topic's metadata for a while
	ends := endOffsets(t, adm, topic)
	if len(ends) != 2 || ends[0] != 0 || ends[1] != 0 {
		t.Fatalf("recreated topic end offsets %v, want two empty partitions", ends)
	}
	rcs, err = adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		t.Fatalf("DescribeTopicConfigs after recreate: %v", err)
	}
	rc, _ = rcs.On(topic, nil)
	for _, c := range rc.Configs {
		if c.Key == "max.message.bytes" && c.MaybeValue() == "2000000" {
			t.Fatalf("recreated topic kept the deleted topic's override max.message.bytes=2000000")
		}
	}
	produceSync(t, b.Client(t), &kgo.Record{Topic: topic, Value: []byte("after-recreate")})
	got := consumeAll(t, b, topic)
	if n := countRecords(got); n != 1 {
		t.Fatalf("recreated topic has %d records, want only the one produced after recreating", n)
	}

	// Restart: the recreated topic (and not the deleted one's data) survives.
	b.Stop()
	b.Restart()
	got = consumeAll(t, b, topic)
	if n := countRecords(got); n != 1 {
		t.Fatalf("after restart the recreated topic has %d records, want 1", n)
	}
}

// TestCLI covers `ringtail version`, `ringtail --help`, the config file, RINGTAIL_* environment
// variables and flag precedence.
func TestCLI(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--help"}} {
		out, err := exec.Command(brokerBin, args...).CombinedOutput()
		if err != nil {
			t.Errorf("ringtail %s: %v\n%s", strings.Join(args, " "), err, out)
		} else if len(strings.TrimSpace(string(out))) == 0 {
			t.Errorf("ringtail %s printed nothing", strings.Join(args, " "))
		}
	}
	out, _ := exec.Command(brokerBin, "--help").CombinedOutput()
	for _, flag := range []string{"serve"} {
		if !strings.Contains(string(out), flag) {
			t.Errorf("ringtail --help does not mention %q:\n%s", flag, out)
		}
	}

	cfgFile := filepath.Join(t.TempDir(), "ringtail.conf")
	if err := os.WriteFile(cfgFile, []byte("# test config\nnum-partitions = 4\nnode-id = 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name       string
		opts       []BrokerOpt
		partitions int
		nodeID     int32
	}{
		{"file", []BrokerOpt{withArgs("--config", cfgFile)}, 4, 3},
		{"env", []BrokerOpt{withEnv("RINGTAIL_NUM_PARTITIONS=5", "RINGTAIL_NODE_ID=9")}, 5, 9},
		{"flag-over-file", []BrokerOpt{withArgs("--config", cfgFile, "--num-partitions", "6")}, 6, 3},
		{"flag-over-env", []BrokerOpt{withEnv("RINGTAIL_NUM_PARTITIONS=5"), withArgs("--num-partitions", "2")}, 2, -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := startBroker(t, c.opts...)
			cl := b.Client(t)
			metadataFor(t, cl, "cli-topic", true)
			mt := waitTopicReady(t, cl, "cli-topic")
			if len(mt.Partitions) != c.partitions {
				t.Fatalf("auto-created topic has %d partitions, want %d", len(mt.Partitions), c.partitions)
			}
			if c.nodeID >= 0 && mt.Partitions[0].Leader != c.nodeID {
				t.Fatalf("partition leader %d, want node id %d", mt.Partitions[0].Leader, c.nodeID)
			}
		})
	}
}

// TestServeFlags covers --advertised, --durability none and --log-level debug.
func TestServeFlags(t *testing.T) {
	t.Run("advertised", func(t *testing.T) {
		b := startBroker(t, withArgs("--advertised", "127.0.0.1:1", "--node-id", "5"))
		rc := dialRaw(t, b.Addr())
		req := kmsg.NewPtrMetadataRequest()
		req.Version = pickVersion(t, apiVersions(t, b.Addr()), 3, 12)
		resp := rc.mustRoundTrip(t, req).(*kmsg.MetadataResponse)
		if len(resp.Brokers) != 1 || resp.Brokers[0].Host != "127.0.0.1" || resp.Brokers[0].Port != 1 || resp.Brokers[0].NodeID != 5 {
			t.Fatalf("metadata brokers %+v; want node 5 advertised at 127.0.0.1:1", resp.Brokers)
		}
	})
	t.Run("durability none", func(t *testing.T) {
		b := startBroker(t, withArgs("--durability", "none"))
		createTopic(t, b.Admin(t), "nodurable", 1, nil)
		produceSync(t, b.Client(t), &kgo.Record{Topic: "nodurable", Value: []byte("v")})
		if n := countRecords(consumeAll(t, b, "nodurable")); n != 1 {
			t.Fatalf("%d records, want 1", n)
		}
		b.Stop()
		b.Restart()
		if n := countRecords(consumeAll(t, b, "nodurable")); n != 1 {
			t.Fatalf("after a clean restart: %d records, want 1", n)
		}
	})
	t.Run("log-level debug", func(t *testing.T) {
		b := startBroker(t, withArgs("--log-level", "debug"))
		createTopic(t, b.Admin(t), "debuglog", 1, nil)
		b.waitLog(t, "level=DEBUG", "--log-level debug")
	})
	t.Run("bad flag", func(t *testing.T) {
		out, err := exec.Command(brokerBin, "serve", "--no-such-flag").CombinedOutput()
		if err == nil {
			t.Fatalf("serve --no-such-flag exited 0:\n%s", out)
		}
	})
}
