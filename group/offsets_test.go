package group

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

type topicSet map[string]int32

func (ts topicSet) PartitionExists(topic string, p int32) bool {
	n, ok := ts[topic]
	return ok && p >= 0 && p < n
}

func TestOffsetCommitFetch(t *testing.T) {
	h := newHarness(t, Config{InitialRebalanceDelay: -1, Topics: topicSet{"t": 4, "u": 1}})
	// A simple consumer (no generation) commits to a group that does not exist.
	c := h.commit("simple", "", -1, "t", 1, 42)
	if code, ok := h.commitCode(c); !ok || code != 0 {
		t.Fatalf("simple commit %v %v", ok, errName(code))
	}
	if off, code := h.fetch("simple", "t", 1, false); off != 42 || code != 0 {
		t.Fatalf("fetch %d %v", off, errName(code))
	}
	if off, _ := h.fetch("simple", "t", 2, false); off != -1 {
		t.Fatalf("uncommitted partition offset %d", off)
	}
	if off, code := h.fetch("nogroup", "t", 2, false); off != -1 || code != 0 {
		t.Fatalf("missing group %d %v", off, errName(code))
	}
	// Unknown partitions.
	c = h.commit("simple", "", -1, "t", 9, 1)
	if code, _ := h.commitCode(c); code != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("unknown partition %v", errName(code))
	}
	// Metadata too large.
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Version, req.Group, req.Generation = 9, "simple", -1
	big := string(bytes.Repeat([]byte("x"), 5000))
	req.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 1, Metadata: &big}}}}
	r := h.reply()
	h.take(h.c.OffsetCommit(h.now, r, req))
	if code, _ := h.commitCode(r); code != kerr.OffsetMetadataTooLarge.Code {
		t.Fatalf("big metadata %v", errName(code))
	}

	// The response and the visibility of a commit wait for persistence;
	// require_stable sees UNSTABLE_OFFSET_COMMIT meanwhile — the case of a
	// member committing its revoked partitions during a rebalance while the
	// new owner fetches.
	a, gen := h.stableMember("g", joinOpt{}, "A")
	h.commit("g", a, gen, "t", 0, 10)
	h.join("g", "", joinOpt{version: 3}) // rebalance starts
	h.manual = true
	c = h.commit("g", a, gen, "t", 0, 20) // the revoking member commits
	if _, ok := h.commitCode(c); ok {
		t.Fatal("commit answered before persistence")
	}
	if off, code := h.fetch("g", "t", 0, true); code != kerr.UnstableOffsetCommit.Code || off != -1 {
		t.Fatalf("require_stable during pending commit: %d %v", off, errName(code))
	}
	if off, code := h.fetch("g", "t", 0, false); code != 0 || off != 10 {
		t.Fatalf("plain fetch during pending commit: %d %v", off, errName(code))
	}
	h.persistAll()
	h.manual = false
	if code, ok := h.commitCode(c); !ok || code != 0 {
		t.Fatalf("commit after persist %v %v", ok, errName(code))
	}
	if off, code := h.fetch("g", "t", 0, true); code != 0 || off != 20 {
		t.Fatalf("require_stable after persist: %d %v", off, errName(code))
	}

	// Multi-group fetch (v8), with "all topics" for one group.
	freq := kmsg.NewPtrOffsetFetchRequest()
	freq.Version = 8
	freq.Groups = []kmsg.OffsetFetchRequestGroup{
		{Group: "g", Topics: []kmsg.OffsetFetchRequestGroupTopic{{Topic: "t", Partitions: []int32{0, 3}}}},
		{Group: "simple"},
		{Group: "nogroup", Topics: []kmsg.OffsetFetchRequestGroupTopic{{Topic: "u", Partitions: []int32{0}}}},
	}
	r = h.reply()
	h.take(h.c.OffsetFetch(h.now, r, freq))
	groups := h.resps[r].(*kmsg.OffsetFetchResponse).Groups
	if len(groups) != 3 {
		t.Fatalf("groups %d", len(groups))
	}
	p := groups[0].Topics[0].Partitions
	if p[0].Offset != 20 || p[0].LeaderEpoch != 3 || *p[0].Metadata != "md" || p[1].Offset != -1 {
		t.Fatalf("group g %+v", p)
	}
	if len(groups[1].Topics) != 1 || groups[1].Topics[0].Partitions[0].Offset != 42 {
		t.Fatalf("group simple %+v", groups[1])
	}
	if groups[2].Topics[0].Partitions[0].Offset != -1 {
		t.Fatalf("group nogroup %+v", groups[2])
	}
	// Single-group v5 fetch.
	freq = kmsg.NewPtrOffsetFetchRequest()
	freq.Version, freq.Group = 5, "g"
	freq.Topics = []kmsg.OffsetFetchRequestTopic{{Topic: "t", Partitions: []int32{0}}}
	r = h.reply()
	h.take(h.c.OffsetFetch(h.now, r, freq))
	if off := h.resps[r].(*kmsg.OffsetFetchResponse).Topics[0].Partitions[0].Offset; off != 20 {
		t.Fatalf("v5 fetch %d", off)
	}
}

func TestCommitPersistFailure(t *testing.T) {
	h := newHarness(t, Config{InitialRebalanceDelay: -1})
	h.commit("s", "", -1, "t", 0, 1)
	c := h.commit("s", "", -1, "t", 0, 2)
	_ = c
	h.manual = true
	c = h.commit("s", "", -1, "t", 0, 3)
	b := h.held[0]
	h.held = nil
	h.take(h.c.Persisted(h.now, b.Batch, kerr.KafkaStorageError))
	if code, _ := h.commitCode(c); code != kerr.NotCoordinator.Code {
		t.Fatalf("failed persist %v", errName(code))
	}
	if off, code := h.fetch("s", "t", 0, true); off != 2 || code != 0 {
		t.Fatalf("after failed persist %d %v", off, errName(code))
	}
	if persistErrCode(errors.New("disk on fire")) != kerr.NotCoordinator.Code {
		t.Fatal("plain error mapping")
	}
}

func TestDeleteGroups(t *testing.T) {
	h := newHarness(t, Config{InitialRebalanceDelay: -1})
	h.stableMember("busy", joinOpt{}, "A")
	h.commit("idle", "", -1, "t", 0, 7)
	h.manual = true
	req := kmsg.NewPtrDeleteGroupsRequest()
	req.Version = 2
	req.Groups = []string{"busy", "idle", "missing"}
	r := h.reply()
	h.take(h.c.DeleteGroups(h.now, r, req))
	if _, ok := h.resps[r]; ok {
		t.Fatal("delete answered before the tombstones persisted")
	}
	if len(h.held) != 1 {
		t.Fatal("no tombstones")
	}
	for _, rec := range h.held[0].Records {
		if rec.Value != nil {
			t.Fatalf("non-tombstone %x", rec.Key)
		}
	}
	h.persistAll()
	gs := h.resps[r].(*kmsg.DeleteGroupsResponse).Groups
	if gs[0].ErrorCode != kerr.NonEmptyGroup.Code || gs[1].ErrorCode != 0 || gs[2].ErrorCode != kerr.GroupIDNotFound.Code {
		t.Fatalf("delete %+v", gs)
	}
	if h.state("idle") != Dead || h.state("busy") != Stable {
		t.Fatal("wrong groups deleted")
	}
	if off, _ := h.fetch("idle", "t", 0, false); off != -1 {
		t.Fatalf("offset survived delete: %d", off)
	}
}

func TestOffsetDelete(t *testing.T) {
	h := newHarness(t, Config{InitialRebalanceDelay: -1, Topics: topicSet{"t": 2, "u": 2}})
	a, gen := h.stableMember("g", joinOpt{topics: []string{"t"}}, "A")
	h.commit("g", a, gen, "t", 0, 1)
	h.commit("g", a, gen, "u", 0, 1)
	h.manual = true
	req := kmsg.NewPtrOffsetDeleteRequest()
	req.Group = "g"
	req.Topics = []kmsg.OffsetDeleteRequestTopic{
		{Topic: "t", Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 0}}},
		{Topic: "u", Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 0}}},
		{Topic: "nope", Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 0}}},
	}
	r := h.reply()
	h.take(h.c.OffsetDelete(h.now, r, req))
	if _, ok := h.resps[r]; ok {
		t.Fatal("answered before persistence")
	}
	h.persistAll()
	resp := h.resps[r].(*kmsg.OffsetDeleteResponse)
	if resp.ErrorCode != 0 || resp.Topics[0].Partitions[0].ErrorCode != kerr.GroupSubscribedToTopic.Code ||
		resp.Topics[1].Partitions[0].ErrorCode != 0 || resp.Topics[2].Partitions[0].ErrorCode != kerr.UnknownTopicOrPartition.Code {
		t.Fatalf("offset delete %+v", resp)
	}
	if off, _ := h.fetch("g", "u", 0, false); off != -1 {
		t.Fatal("offset not deleted")
	}
	if off, _ := h.fetch("g", "t", 0, false); off != 1 {
		t.Fatal("subscribed offset deleted")
	}
	req.Group = "missing"
	r = h.reply()
	h.take(h.c.OffsetDelete(h.now, r, req))
	if code := h.resps[r].(*kmsg.OffsetDeleteResponse).ErrorCode; code != kerr.GroupIDNotFound.Code {
		t.Fatalf("missing group %v", errName(code))
	}
}

func TestOffsetRetention(t *testing.T) {
	const ret = time.Hour
	h := newHarness(t, Config{InitialRebalanceDelay: -1, OffsetsRetention: ret})
	// Simple group: each offset expires retention after its own commit.
	h.commit("s", "", -1, "t", 0, 1)
	h.advance(30 * time.Minute)
	h.commit("s", "", -1, "t", 1, 1)
	h.advance(30 * time.Minute)
	if off, _ := h.fetch("s", "t", 0, false); off != -1 {
		t.Fatal("t/0 should have expired")
	}
	if off, _ := h.fetch("s", "t", 1, false); off != 1 {
		t.Fatal("t/1 expired early")
	}
	h.advance(30 * time.Minute)
	if h.state("s") != Dead {
		t.Fatal("a simple group with no offsets left should be gone")
	}
	// Consumer group: offsets live while it has members, and expire
	// retention after it became Empty.
	a, gen := h.stableMember("g", joinOpt{session: 10 * time.Second}, "A")
	h.commit("g", a, gen, "t", 0, 5)
	for range 500 { // 4000s > retention: a live group keeps its offsets
		h.advance(8 * time.Second)
		h.heartbeat("g", a, gen, "")
	}
	if off, _ := h.fetch("g", "t", 0, false); off != 5 {
		t.Fatal("offsets of a live group expired")
	}
	h.advance(10 * time.Second) // session expires: Empty
	if h.state("g") != Empty {
		t.Fatalf("state %v", h.state("g"))
	}
	h.advance(ret - time.Second)
	if off, _ := h.fetch("g", "t", 0, false); off != 5 {
		t.Fatal("offsets expired before retention after Empty")
	}
	h.advance(time.Second)
	if h.state("g") != Dead {
		t.Fatalf("state %v", h.state("g"))
	}
	n := len(h.log)
	tomb := 0
	for _, r := range h.log[n-2:] {
		if r.Value == nil {
			tomb++
		}
	}
	if tomb != 2 {
		t.Fatalf("want offset and group tombstones at the end of the log, got %d", tomb)
	}
}
