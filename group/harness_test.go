package group

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// harness drives a Coordinator the way the network layer would: it keeps
// every response by ReplyID, checks each reply is answered at most once,
// and persists batches (immediately, or when told to).
type harness struct {
	t       testing.TB
	c       *Coordinator
	now     time.Time
	next    ReplyID
	resps   map[ReplyID]kmsg.Response
	log     []Record
	held    []Ready // batches not yet persisted (manual mode)
	manual  bool
	issued  int
	answers int
	// fail, when set, decides whether a held batch fails to persist.
	fail  func() bool
	shown map[ReplyID]bool // replies already printed by a script
}

func newHarness(t testing.TB, cfg Config) *harness {
	return &harness{t: t, c: New(cfg), now: t0, resps: make(map[ReplyID]kmsg.Response)}
}

func (h *harness) reply() ReplyID {
	h.next++
	h.issued++
	return h.next
}

func (h *harness) take(r Ready) {
	h.t.Helper()
	for _, o := range r.Send {
		if _, dup := h.resps[o.Reply]; dup {
			h.t.Fatalf("reply %d answered twice", o.Reply)
		}
		if o.Response.Key() < 0 {
			h.t.Fatalf("bad response")
		}
		h.resps[o.Reply] = o.Response
		h.answers++
	}
	if (len(r.Records) > 0) != (r.Batch != 0) {
		h.t.Fatalf("records %d with batch %d", len(r.Records), r.Batch)
	}
	if r.Batch == 0 {
		return
	}
	if h.manual {
		h.held = append(h.held, r)
		return
	}
	h.log = append(h.log, r.Records...)
	h.take(h.c.Persisted(h.now, r.Batch, nil))
}

// persistAll persists every held batch in order (manual mode).
func (h *harness) persistAll() {
	h.t.Helper()
	for len(h.held) > 0 {
		r := h.held[0]
		h.held = h.held[1:]
		if h.fail != nil && h.fail() {
			h.take(h.c.Persisted(h.now, r.Batch, kerr.NotEnoughReplicas))
			continue
		}
		h.log = append(h.log, r.Records...)
		h.take(h.c.Persisted(h.now, r.Batch, nil))
	}
}

func (h *harness) advance(d time.Duration) {
	h.t.Helper()
	h.now = h.now.Add(d)
	h.take(h.c.Tick(h.now))
}

type joinOpt struct {
	version  int16
	instance string
	session  time.Duration
	rebal    time.Duration
	protos   []string
	topics   []string
	ptype    string
}

func consumerMeta(topics []string) []byte {
	m := kmsg.NewConsumerMemberMetadata()
	m.Topics = topics
	return m.AppendTo(nil)
}

func (h *harness) join(group, memberID string, o joinOpt) ReplyID {
	h.t.Helper()
	req := kmsg.NewPtrJoinGroupRequest()
	req.Version = 9
	if o.version != 0 {
		req.Version = o.version
	}
	req.Group, req.MemberID = group, memberID
	req.SessionTimeoutMillis = 10000
	if o.session != 0 {
		req.SessionTimeoutMillis = int32(o.session / time.Millisecond)
	}
	req.RebalanceTimeoutMillis = 30000
	if o.rebal != 0 {
		req.RebalanceTimeoutMillis = int32(o.rebal / time.Millisecond)
	}
	if o.instance != "" {
		req.InstanceID = strp(o.instance)
	}
	req.ProtocolType = "consumer"
	if o.ptype != "" {
		req.ProtocolType = o.ptype
	}
	protos := o.protos
	if protos == nil {
		protos = []string{"range"}
	}
	topics := o.topics
	if topics == nil {
		topics = []string{"t"}
	}
	for _, p := range protos {
		req.Protocols = append(req.Protocols, kmsg.JoinGroupRequestProtocol{Name: p, Metadata: consumerMeta(topics)})
	}
	r := h.reply()
	h.take(h.c.JoinGroup(h.now, r, Client{ID: "cli", Host: "/127.0.0.1"}, req))
	return r
}

func (h *harness) joinResp(r ReplyID) *kmsg.JoinGroupResponse {
	h.t.Helper()
	resp, ok := h.resps[r]
	if !ok {
		return nil
	}
	return resp.(*kmsg.JoinGroupResponse)
}

func (h *harness) mustJoin(r ReplyID, code int16) *kmsg.JoinGroupResponse {
	h.t.Helper()
	resp := h.joinResp(r)
	if resp == nil {
		h.t.Fatalf("join %d not answered", r)
	}
	if resp.ErrorCode != code {
		h.t.Fatalf("join %d: error %v, want %v", r, errName(resp.ErrorCode), errName(code))
	}
	return resp
}

func (h *harness) sync(group, memberID string, gen int32, assign map[string]string) ReplyID {
	h.t.Helper()
	req := kmsg.NewPtrSyncGroupRequest()
	req.Version = 5
	req.Group, req.MemberID, req.Generation = group, memberID, gen
	for id, a := range assign {
		req.GroupAssignment = append(req.GroupAssignment, kmsg.SyncGroupRequestGroupAssignment{MemberID: id, MemberAssignment: []byte(a)})
	}
	r := h.reply()
	h.take(h.c.SyncGroup(h.now, r, req))
	return r
}

func (h *harness) syncResp(r ReplyID) *kmsg.SyncGroupResponse {
	resp, ok := h.resps[r]
	if !ok {
		return nil
	}
	return resp.(*kmsg.SyncGroupResponse)
}

func (h *harness) mustSync(r ReplyID, code int16, assignment string) {
	h.t.Helper()
	resp := h.syncResp(r)
	if resp == nil {
		h.t.Fatalf("sync %d not answered", r)
	}
	if resp.ErrorCode != code || (code == 0 && string(resp.MemberAssignment) != assignment) {
		h.t.Fatalf("sync %d: error %v assignment %q, want %v %q", r, errName(resp.ErrorCode), resp.MemberAssignment, errName(code), assignment)
	}
}

func (h *harness) heartbeat(group, memberID string, gen int32, instance string) int16 {
	h.t.Helper()
	req := kmsg.NewPtrHeartbeatRequest()
	req.Version = 4
	req.Group, req.MemberID, req.Generation = group, memberID, gen
	if instance != "" {
		req.InstanceID = strp(instance)
	}
	r := h.reply()
	h.take(h.c.Heartbeat(h.now, r, req))
	return h.resps[r].(*kmsg.HeartbeatResponse).ErrorCode
}

func (h *harness) commit(group, memberID string, gen int32, topic string, part int32, offset int64) ReplyID {
	h.t.Helper()
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Version = 9
	req.Group, req.MemberID, req.Generation = group, memberID, gen
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewOffsetCommitRequestTopicPartition()
	rp.Partition, rp.Offset, rp.LeaderEpoch, rp.Metadata = part, offset, 3, strp("md")
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	r := h.reply()
	h.take(h.c.OffsetCommit(h.now, r, req))
	return r
}

func (h *harness) commitCode(r ReplyID) (int16, bool) {
	resp, ok := h.resps[r]
	if !ok {
		return 0, false
	}
	return resp.(*kmsg.OffsetCommitResponse).Topics[0].Partitions[0].ErrorCode, true
}

// fetch returns offset and error code of one partition through v8.
func (h *harness) fetch(group, topic string, part int32, stable bool) (int64, int16) {
	h.t.Helper()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Version = 8
	req.RequireStable = stable
	rg := kmsg.NewOffsetFetchRequestGroup()
	rg.Group = group
	rg.Topics = []kmsg.OffsetFetchRequestGroupTopic{{Topic: topic, Partitions: []int32{part}}}
	req.Groups = append(req.Groups, rg)
	r := h.reply()
	h.take(h.c.OffsetFetch(h.now, r, req))
	p := h.resps[r].(*kmsg.OffsetFetchResponse).Groups[0].Topics[0].Partitions[0]
	return p.Offset, p.ErrorCode
}

func (h *harness) leave(group string, members ...kmsg.LeaveGroupRequestMember) *kmsg.LeaveGroupResponse {
	h.t.Helper()
	req := kmsg.NewPtrLeaveGroupRequest()
	req.Version = 5
	req.Group = group
	req.Members = members
	r := h.reply()
	h.take(h.c.LeaveGroup(h.now, r, req))
	return h.resps[r].(*kmsg.LeaveGroupResponse)
}

func (h *harness) state(group string) State {
	g := h.c.groups[group]
	if g == nil {
		return Dead
	}
	return g.state
}

func errName(code int16) string {
	if code == 0 {
		return "NONE"
	}
	if err, ok := kerr.ErrorForCode(code).(*kerr.Error); ok {
		return err.Message
	}
	return fmt.Sprint(code)
}

// stableMember joins a lone member to a fresh group and syncs it, returning
// its id and generation.
func (h *harness) stableMember(group string, o joinOpt, assignment string) (string, int32) {
	h.t.Helper()
	r := h.join(group, "", o)
	id := ""
	if resp := h.joinResp(r); resp != nil && resp.ErrorCode == kerr.MemberIDRequired.Code {
		id = resp.MemberID
		r = h.join(group, id, o)
	}
	if h.joinResp(r) == nil {
		h.advance(h.c.cfg.InitialRebalanceDelay)
	}
	jr := h.mustJoin(r, 0)
	s := h.sync(group, jr.MemberID, jr.Generation, map[string]string{jr.MemberID: assignment})
	h.mustSync(s, 0, assignment)
	return jr.MemberID, jr.Generation
}
