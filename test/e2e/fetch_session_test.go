package e2e

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ringtail/ringtail/test/cluster"
)

// sessionFetch builds a fetch in a session: parts are the partitions of topic it lists (with
// their fetch offsets), forget those it forgets.
func sessionFetch(version int16, sessionID, epoch int32, topic string, id [16]byte, parts map[int32]int64, forget []int32, maxWaitMs int32) *kmsg.FetchRequest {
	fr := fetchReq(version, topic, 0, 0, maxWaitMs)
	fr.SessionID, fr.SessionEpoch = sessionID, epoch
	fr.Topics[0].TopicID = id
	tmpl := fr.Topics[0].Partitions[0]
	fr.Topics[0].Partitions = nil
	for p, off := range parts {
		fp := tmpl
		fp.Partition, fp.FetchOffset = p, off
		fr.Topics[0].Partitions = append(fr.Topics[0].Partitions, fp)
	}
	if len(parts) == 0 {
		fr.Topics = nil
	}
	if len(forget) > 0 {
		ft := kmsg.NewFetchRequestForgottenTopic()
		ft.Topic, ft.TopicID, ft.Partitions = topic, id, forget
		fr.ForgottenTopics = append(fr.ForgottenTopics, ft)
	}
	return fr
}

// answered maps each partition a fetch response carries to its record count.
func answered(t *testing.T, resp *kmsg.FetchResponse) map[int32]int {
	t.Helper()
	out := map[int32]int{}
	for _, rt := range resp.Topics {
		for i := range rt.Partitions {
			p := &rt.Partitions[i]
			if p.ErrorCode != 0 {
				t.Fatalf("partition %d: error %v", p.Partition, kerr.ErrorForCode(p.ErrorCode))
			}
			fp, _ := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{Topic: rt.Topic, Partition: p.Partition}, p, kgo.DefaultDecompressor(), nil)
			if fp.Err != nil {
				t.Fatalf("partition %d: %v", p.Partition, fp.Err)
			}
			out[p.Partition] = len(fp.Records)
		}
	}
	return out
}

// TestFetchSessionsRaw drives a fetch session (KIP-227) by hand: a full fetch starts it, an
// incremental one is answered with only what changed, a long poll in it wakes on new data in a
// partition the request does not list, forgotten partitions stay out, and the errors are
// Kafka's: INVALID_FETCH_SESSION_EPOCH, FETCH_SESSION_ID_NOT_FOUND (also after epoch -1 closed
// the session), FETCH_SESSION_TOPIC_ID_ERROR and UNKNOWN_TOPIC_ID with topic ids (v13).
func TestFetchSessionsRaw(t *testing.T) {
	b := startBroker(t)
	adm := b.Admin(t)
	createTopic(t, adm, "sess", 2, nil)
	cl := b.Client(t, kgo.DefaultProduceTopic("sess"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produceSync(t, cl, &kgo.Record{Partition: 0, Value: []byte("a")}, &kgo.Record{Partition: 0, Value: []byte("b")})
	v := pickVersion(t, apiVersions(t, b.Addr()), 1, 12)
	if v < 7 {
		t.Fatalf("broker's Fetch v%d has no sessions", v)
	}
	rc := dialRaw(t, b.Addr())
	fetch := func(req *kmsg.FetchRequest) *kmsg.FetchResponse {
		t.Helper()
		return rc.mustRoundTrip(t, req).(*kmsg.FetchResponse)
	}
	var none [16]byte

	resp := fetch(sessionFetch(v, 0, 0, "sess", none, map[int32]int64{0: 0, 1: 0}, nil, 0))
	sid := resp.SessionID
	if resp.ErrorCode != 0 || sid == 0 {
		t.Fatalf("full fetch with epoch 0: error %d, session %d; want a session", resp.ErrorCode, sid)
	}
	if got := answered(t, resp); len(got) != 2 || got[0] != 2 || got[1] != 0 {
		t.Fatalf("full fetch answered %v, want both partitions, 2 records in 0", got)
	}

	// Partition 0 consumed: nothing changed, nothing answered.
	resp = fetch(sessionFetch(v, sid, 1, "sess", none, map[int32]int64{0: 2}, nil, 0))
	if got := answered(t, resp); resp.ErrorCode != 0 || resp.SessionID != sid || len(got) != 0 {
		t.Fatalf("incremental fetch without news: error %d session %d answered %v", resp.ErrorCode, resp.SessionID, got)
	}

	// A long poll listing no partition must wake when partition 1 of its session gets data.
	// Its wait (30 s, the broker's cap) is longer than the read below allows.
	poll := sessionFetch(v, sid, 2, "sess", none, nil, nil, 30000)
	corr, err := rc.send(poll)
	if err != nil {
		t.Fatal(err)
	}
	produceSync(t, cl, &kgo.Record{Partition: 1, Value: []byte("c")})
	r, err := rc.readResponse(poll, v, corr, 20*time.Second)
	if err != nil {
		t.Fatalf("long poll in an incremental session did not wake on new data: %v", err)
	}
	resp = r.(*kmsg.FetchResponse)
	if got := answered(t, resp); len(got) != 1 || got[1] != 1 {
		t.Fatalf("long poll answered %v, want partition 1 with 1 record only", got)
	}

	// Forget partition 0: new data there is not answered.
	resp = fetch(sessionFetch(v, sid, 3, "sess", none, map[int32]int64{1: 1}, []int32{0}, 0))
	if got := answered(t, resp); len(got) != 0 {
		t.Fatalf("after forgetting 0: answered %v", got)
	}
	produceSync(t, cl, &kgo.Record{Partition: 0, Value: []byte("d")})
	resp = fetch(sessionFetch(v, sid, 4, "sess", none, nil, nil, 0))
	if got := answered(t, resp); len(got) != 0 {
		t.Fatalf("a forgotten partition's new data was answered: %v", got)
	}

	// The same epoch again.
	resp = fetch(sessionFetch(v, sid, 4, "sess", none, nil, nil, 0))
	if resp.ErrorCode != kerr.InvalidFetchSessionEpoch.Code || resp.SessionID != 0 || len(resp.Topics) != 0 {
		t.Fatalf("repeated epoch: error %v session %d topics %d; want INVALID_FETCH_SESSION_EPOCH alone",
			kerr.ErrorForCode(resp.ErrorCode), resp.SessionID, len(resp.Topics))
	}
	// A session the broker does not have.
	resp = fetch(sessionFetch(v, sid^0x5a5a, 1, "sess", none, nil, nil, 0))
	if resp.ErrorCode != kerr.FetchSessionIDNotFound.Code {
		t.Fatalf("unknown session: error %v, want FETCH_SESSION_ID_NOT_FOUND", kerr.ErrorForCode(resp.ErrorCode))
	}
	// Epoch -1 closes the session and is answered in full, without one.
	resp = fetch(sessionFetch(v, sid, -1, "sess", none, map[int32]int64{0: 2}, nil, 0))
	if got := answered(t, resp); resp.ErrorCode != 0 || resp.SessionID != 0 || got[0] != 1 {
		t.Fatalf("closing fetch: error %d session %d answered %v", resp.ErrorCode, resp.SessionID, got)
	}
	resp = fetch(sessionFetch(v, sid, 5, "sess", none, nil, nil, 0))
	if resp.ErrorCode != kerr.FetchSessionIDNotFound.Code {
		t.Fatalf("closed session: error %v, want FETCH_SESSION_ID_NOT_FOUND", kerr.ErrorForCode(resp.ErrorCode))
	}
	b.waitLog(t, "fetch: session refused", "refused fetch session")

	// Topic ids (v13): a session of ids answers with ids, refuses to go on by names, and an
	// unknown id is UNKNOWN_TOPIC_ID.
	if pickVersion(t, apiVersions(t, b.Addr()), 1, 13) < 13 {
		t.Fatal("broker does not offer Fetch v13 (topic ids)")
	}
	md, err := adm.Metadata(ctxTimeout(t, opTimeout), "sess")
	if err != nil {
		t.Fatal(err)
	}
	id := [16]byte(md.Topics["sess"].ID)
	resp = fetch(sessionFetch(13, 0, 0, "", id, map[int32]int64{0: 0}, nil, 0))
	if resp.ErrorCode != 0 || resp.SessionID == 0 || len(resp.Topics) != 1 || resp.Topics[0].TopicID != id {
		t.Fatalf("v13 full fetch: error %d session %d topics %+v", resp.ErrorCode, resp.SessionID, resp.Topics)
	}
	if got := answered(t, resp); got[0] != 3 {
		t.Fatalf("v13 full fetch answered %v, want 3 records in partition 0", got)
	}
	resp = fetch(sessionFetch(v, resp.SessionID, 1, "sess", none, nil, nil, 0))
	if resp.ErrorCode != kerr.FetchSessionTopicIDError.Code {
		t.Fatalf("v%d in a v13 session: error %v, want FETCH_SESSION_TOPIC_ID_ERROR", v, kerr.ErrorForCode(resp.ErrorCode))
	}
	resp = fetch(sessionFetch(13, 0, -1, "", [16]byte{1, 2, 3}, map[int32]int64{0: 0}, nil, 0))
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 || resp.Topics[0].Partitions[0].ErrorCode != kerr.UnknownTopicID.Code {
		t.Fatalf("unknown topic id: %+v, want UNKNOWN_TOPIC_ID", resp.Topics)
	}
}

// TestFetchSessionsWithChangingTopics consumes with franz-go, which uses incremental fetch
// sessions by default, while a topic grows (CreatePartitions) and another is deleted: every
// record produced to the growing topic, new partitions included, is read exactly once, the
// broker keeps a session for the consumer, and the consumer goes on after the deletion.
func TestFetchSessionsWithChangingTopics(t *testing.T) {
	port := freePort(t)
	b := startBroker(t, withArgs("--metrics-listen", fmt.Sprintf("127.0.0.1:%d", port)))
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	adm := b.Admin(t)
	createTopic(t, adm, "grows", 2, nil)
	createTopic(t, adm, "goes", 2, nil)
	prod := b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	cons := b.Client(t, kgo.ConsumeTopics("grows", "goes"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.MetadataMinAge(100*time.Millisecond), kgo.MetadataMaxAge(time.Second), kgo.FetchMaxWait(500*time.Millisecond))

	var mu sync.Mutex
	seen := map[string]int{} // value → times read, of "grows"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			fs := cons.PollFetches(ctx)
			fs.EachRecord(func(r *kgo.Record) {
				if r.Topic == "grows" {
					mu.Lock()
					seen[string(r.Value)]++
					mu.Unlock()
				}
			})
		}
	}()
	t.Cleanup(func() { cancel(); <-done })

	sent := 0
	produce := func(topic string, partitions int32) {
		t.Helper()
		var recs []*kgo.Record
		for p := int32(0); p < partitions; p++ {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: []byte(topic + "-" + strconv.Itoa(sent))})
			if topic == "grows" {
				sent++
			}
		}
		produceSync(t, prod, recs...)
	}
	waitRead := func(what string) {
		t.Helper()
		err := cluster.Poll(ctxTimeout(t, opTimeout), func(context.Context) error {
			mu.Lock()
			defer mu.Unlock()
			if len(seen) < sent {
				return fmt.Errorf("%d of %d records of grows read", len(seen), sent)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	produce("grows", 2)
	produce("goes", 2)
	waitRead("before any change")
	if n := scrape(t, url)["ringtail_fetch_sessions"]; n < 1 {
		t.Fatalf("ringtail_fetch_sessions = %v while franz-go consumes, want a session", n)
	}

	if _, err := adm.CreatePartitions(ctxTimeout(t, opTimeout), 4, "grows"); err != nil {
		t.Fatal(err)
	}
	// A new producer, so its metadata has the new partitions (the consumer finds them by its
	// metadata refresh, every second here).
	prod = b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produce("grows", 4)
	waitRead("after CreatePartitions")

	res, err := adm.DeleteTopics(ctxTimeout(t, opTimeout), "goes")
	if err != nil || res["goes"].Err != nil {
		t.Fatalf("delete goes: %v / %v", err, res["goes"].Err)
	}
	for i := 0; i < 3; i++ {
		produce("grows", 4)
	}
	waitRead("after deleting the other topic")

	mu.Lock()
	defer mu.Unlock()
	for v, n := range seen {
		if n != 1 {
			t.Errorf("%s read %d times", v, n)
		}
	}
	if len(seen) != sent {
		t.Fatalf("%d distinct records read, %d sent", len(seen), sent)
	}
}
