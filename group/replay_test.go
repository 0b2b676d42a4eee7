package group

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// durable renders what must survive a restart, for groups whose live state
// equals their persisted state (Stable or Empty with no write in flight);
// for the others only their offsets.
func durable(c *Coordinator, onlyOffsets map[string]bool) string {
	var b strings.Builder
	for _, g := range c.sortedGroups() {
		if !g.everPersisted && len(g.offsets) == 0 {
			continue // nothing durable yet
		}
		fmt.Fprintf(&b, "group %s\n", g.name)
		full := !onlyOffsets[g.name] && (g.state == Stable || g.state == Empty) && !g.syncInFlight && g.everPersisted
		if full {
			fmt.Fprintf(&b, " state=%v type=%q proto=%q gen=%d leader=%q\n", g.state, g.protocolType, g.protocol, g.generation, g.leader)
			if g.state == Empty {
				fmt.Fprintf(&b, " emptySince=%d\n", g.stateSince.UnixMilli())
			}
			for _, m := range g.order {
				inst := "<nil>"
				if m.instanceID != nil {
					inst = *m.instanceID
				}
				fmt.Fprintf(&b, " member %s inst=%s client=%s/%s session=%v rebalance=%v md=%x assign=%q\n",
					m.id, inst, m.clientID, m.clientHost, m.session, m.rebalance, m.metadataFor(g.protocol), m.assignment)
			}
		}
		var tps []topicPartition
		for tp := range g.offsets {
			tps = append(tps, tp)
		}
		sortTPs(tps)
		for _, tp := range tps {
			o := g.offsets[tp]
			fmt.Fprintf(&b, " offset %s/%d=%d epoch=%d md=%q at=%d\n", tp.topic, tp.partition, o.offset, o.leaderEpoch, o.metadata, o.commitTime.UnixMilli())
		}
	}
	return b.String()
}

// partial lists the groups of c that are mid-rebalance (compared by
// offsets only).
func partial(c *Coordinator) map[string]bool {
	m := make(map[string]bool)
	for _, g := range c.groups {
		if !(g.state == Stable || g.state == Empty) || g.syncInFlight {
			m[g.name] = true
		}
	}
	return m
}

// randomRun drives a coordinator with a seeded random workload and checks,
// at checkpoints, that replaying the emitted records into a fresh
// coordinator gives the same durable state.
func randomRun(t *testing.T, seed uint64, steps int, failures bool) ([]Record, int) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	h := newHarness(t, Config{InitialRebalanceDelay: time.Second, OffsetsRetention: 10 * time.Minute, Incarnation: seed})
	h.manual = true
	if failures {
		h.fail = func() bool { return rng.IntN(5) == 0 }
	}
	groups := []string{"g0", "g1", "g2", "g3"}
	lastJoin := map[string]*kmsg.JoinGroupResponse{} // by member id
	pendingJoins := []ReplyID{}
	fullStable := 0
	check := func() {
		h.persistAll()
		if failures {
			return // a failed write leaves memory ahead of the log, as in Kafka
		}
		f := New(Config{InitialRebalanceDelay: time.Second, OffsetsRetention: 10 * time.Minute})
		if err := f.Replay(h.now, h.log); err != nil {
			t.Fatalf("seed %d: replay: %v", seed, err)
		}
		p := partial(h.c)
		for _, g := range h.c.groups {
			if !p[g.name] && g.state == Stable {
				fullStable++
			}
		}
		want, got := durable(h.c, p), durable(f, p)
		if want != got {
			t.Fatalf("seed %d: replayed state differs\nlive:\n%s\nreplayed:\n%s", seed, want, got)
		}
	}
	for step := 0; step < steps; step++ {
		// Pick up join responses to learn ids and generations.
		for _, r := range pendingJoins {
			if jr := h.joinResp(r); jr != nil && jr.ErrorCode == 0 {
				lastJoin[jr.MemberID] = jr
			}
		}
		pendingJoins = pendingJoins[:0]
		gname := groups[rng.IntN(len(groups))]
		g := h.c.groups[gname]
		var m *member
		if g != nil && len(g.order) > 0 {
			m = g.order[rng.IntN(len(g.order))]
		}
		o := joinOpt{version: []int16{3, 5, 9}[rng.IntN(3)], rebal: 8 * time.Second}
		if rng.IntN(3) == 0 {
			o.instance = fmt.Sprintf("i%d", rng.IntN(4))
		}
		if rng.IntN(4) == 0 {
			o.protos = []string{"sticky", "range"}
		}
		switch op := rng.IntN(100); {
		case op < 15: // a new member (or a static one coming back)
			r := h.join(gname, "", o)
			if jr := h.joinResp(r); jr != nil && jr.MemberID != "" && jr.ErrorCode != 0 {
				pendingJoins = append(pendingJoins, h.join(gname, jr.MemberID, o))
			} else {
				pendingJoins = append(pendingJoins, r)
			}
		case op < 30 && m != nil: // rejoin
			if m.instanceID != nil {
				o.instance = *m.instanceID
			} else {
				o.instance = ""
			}
			pendingJoins = append(pendingJoins, h.join(gname, m.id, o))
		case op < 45 && m != nil: // sync
			assign := map[string]string{}
			if jr := lastJoin[m.id]; jr != nil {
				for _, jm := range jr.Members {
					assign[jm.MemberID] = fmt.Sprintf("a%d-%s", rng.IntN(100), jm.MemberID)
				}
			}
			h.sync(gname, m.id, g.generation, assign)
		case op < 60 && m != nil:
			gen := g.generation
			if rng.IntN(10) == 0 {
				gen--
			}
			h.heartbeat(gname, m.id, gen, "")
		case op < 65 && m != nil:
			h.leave(gname, kmsg.LeaveGroupRequestMember{MemberID: m.id, InstanceID: m.instanceID})
		case op < 78:
			if m != nil && rng.IntN(2) == 0 {
				h.commit(gname, m.id, g.generation, "t", int32(rng.IntN(3)), rng.Int64N(1000))
			} else {
				h.commit(gname, "", -1, "t", int32(rng.IntN(3)), rng.Int64N(1000))
			}
		case op < 80:
			req := kmsg.NewPtrDeleteGroupsRequest()
			req.Version = 2
			req.Groups = []string{gname}
			h.take(h.c.DeleteGroups(h.now, h.reply(), req))
		case op < 82:
			req := kmsg.NewPtrOffsetDeleteRequest()
			req.Group = gname
			req.Topics = []kmsg.OffsetDeleteRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: int32(rng.IntN(3))}}}}
			h.take(h.c.OffsetDelete(h.now, h.reply(), req))
		case op < 92:
			h.advance(time.Duration(rng.IntN(6000)) * time.Millisecond)
		case op < 97:
			h.persistAll()
		default:
			check()
		}
	}
	// Quiesce: everyone stops; every parked request must be answered.
	for range 100 {
		h.persistAll()
		h.advance(15 * time.Second)
	}
	h.persistAll()
	check()
	if h.answers != h.issued {
		t.Fatalf("seed %d: %d requests, %d answers", seed, h.issued, h.answers)
	}
	return h.log, fullStable
}

func TestReplayMatchesLiveState(t *testing.T) {
	stable := 0
	for seed := uint64(1); seed <= 30; seed++ {
		_, n := randomRun(t, seed, 600, false)
		stable += n
	}
	if stable < 30 {
		t.Fatalf("only %d Stable groups compared in full: the workload is too weak", stable)
	}
}

// TestEveryRequestAnswered injects persistence failures and checks that
// every request, parked or not, still gets exactly one response.
func TestEveryRequestAnswered(t *testing.T) {
	for seed := uint64(100); seed < 120; seed++ {
		randomRun(t, seed, 600, true)
	}
}

func TestDeterministic(t *testing.T) {
	a, _ := randomRun(t, 77, 400, false)
	b, _ := randomRun(t, 77, 400, false)
	if !slices.EqualFunc(a, b, func(x, y Record) bool {
		return bytes.Equal(x.Key, y.Key) && bytes.Equal(x.Value, y.Value) && (x.Value == nil) == (y.Value == nil)
	}) {
		t.Fatal("same seed, different records")
	}
}

func TestRecordEncoding(t *testing.T) {
	o := committed{offset: 1 << 40, leaderEpoch: -1, metadata: "meta", commitTime: time.UnixMilli(1700000000123)}
	d, err := decodeRecord(Record{offsetKey("grp", topicPartition{"topic", 7}), offsetValue(o)})
	if err != nil || d.legacy || d.kind != kindOffset || d.group != "grp" || d.tp != (topicPartition{"topic", 7}) || d.off != o {
		t.Fatalf("offset round trip %+v %v", d, err)
	}
	for _, bad := range []Record{
		{Key: nil},
		{Key: []byte{9}},
		{Key: []byte{kindGroup, 5, 'a'}},            // legacy, truncated
		{Key: append(groupKey("x"), 0)},             // trailing byte
		{Key: []byte{0, 9, 0, 1, 'g'}},              // unknown key version
		{Key: groupKey("g"), Value: []byte{0, 200}}, // unknown value version
		{Key: offsetKey("g", topicPartition{"t", 0}), Value: []byte{0, 3, 1}},
	} {
		if _, err := decodeRecord(bad); !errors.Is(err, ErrCorrupt) {
			t.Errorf("record %x=%x: %v", bad.Key, bad.Value, err)
		}
	}
	v := offsetValue(o)
	for i := 1; i < len(v); i++ {
		if _, err := decodeRecord(Record{offsetKey("g", topicPartition{"t", 0}), v[:i]}); !errors.Is(err, ErrCorrupt) {
			t.Errorf("truncated at %d: %v", i, err)
		}
	}
	c := New(Config{})
	if err := c.Replay(t0, []Record{{Key: groupKey("g"), Value: []byte{0, 200}}}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("corrupt group value: %v", err)
	}
}

// TestKafkaSchemas reads what the coordinator writes the way a lag monitor does: with Kafka's
// schemas (kmsg's OffsetCommitKey/Value, GroupMetadataKey/Value), dispatching on the key
// version, and expecting the versions Kafka itself writes.
func TestKafkaSchemas(t *testing.T) {
	h := newHarness(t, Config{InitialRebalanceDelay: time.Second})
	id, gen := h.stableMember("g", joinOpt{version: 5, instance: "i1"}, "assigned")
	h.commit("g", id, gen, "orders", 3, 42)
	h.persistAll()
	var sawOffset, sawGroup bool
	for _, r := range h.log {
		version := int16(binary.BigEndian.Uint16(r.Key))
		switch version {
		case 0, 1:
			var k kmsg.OffsetCommitKey
			var v kmsg.OffsetCommitValue
			if err := k.ReadFrom(r.Key); err != nil || version != 1 {
				t.Fatalf("offset key %x: version %d, %v", r.Key, version, err)
			}
			if err := v.ReadFrom(r.Value); err != nil || v.Version != 3 {
				t.Fatalf("offset value %x: version %d, %v", r.Value, v.Version, err)
			}
			if k.Group != "g" || k.Topic != "orders" || k.Partition != 3 || v.Offset != 42 || v.CommitTimestamp != h.now.UnixMilli() {
				t.Fatalf("offset record %+v %+v", k, v)
			}
			sawOffset = true
		case 2:
			var k kmsg.GroupMetadataKey
			var v kmsg.GroupMetadataValue
			if err := k.ReadFrom(r.Key); err != nil || k.Group != "g" {
				t.Fatalf("group key %x: %+v %v", r.Key, k, err)
			}
			if err := v.ReadFrom(r.Value); err != nil || v.Version != 3 {
				t.Fatalf("group value %x: version %d, %v", r.Value, v.Version, err)
			}
			if v.ProtocolType != "consumer" || v.Protocol == nil || *v.Protocol != "range" || v.Leader == nil ||
				*v.Leader != id || v.Generation != gen || len(v.Members) != 1 {
				t.Fatalf("group value %+v", v)
			}
			m := v.Members[0]
			if m.MemberID != id || m.InstanceID == nil || *m.InstanceID != "i1" || string(m.Assignment) != "assigned" ||
				m.SessionTimeoutMillis <= 0 || m.RebalanceTimeoutMillis <= 0 {
				t.Fatalf("group member %+v", m)
			}
			sawGroup = true
		default:
			t.Fatalf("key version %d", version)
		}
	}
	if !sawOffset || !sawGroup {
		t.Fatalf("offset record %v, group record %v", sawOffset, sawGroup)
	}
}
