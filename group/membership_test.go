package group

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestSingleMemberJoinSyncHeartbeat(t *testing.T) {
	h := newHarness(t, Config{})
	// v4+ first join without a member id: MEMBER_ID_REQUIRED with the id.
	r := h.join("g", "", joinOpt{})
	resp := h.mustJoin(r, kerr.MemberIDRequired.Code)
	id := resp.MemberID
	if id == "" {
		t.Fatal("no member id handed out")
	}
	r = h.join("g", id, joinOpt{})
	if h.joinResp(r) != nil {
		t.Fatal("join answered before the initial rebalance delay")
	}
	if h.state("g") != PreparingRebalance {
		t.Fatalf("state %v", h.state("g"))
	}
	h.advance(2999 * time.Millisecond)
	if h.joinResp(r) != nil {
		t.Fatal("join answered early")
	}
	h.advance(time.Millisecond)
	jr := h.mustJoin(r, 0)
	if jr.LeaderID != id || jr.Generation != 1 || *jr.Protocol != "range" || len(jr.Members) != 1 {
		t.Fatalf("join response %+v", jr)
	}
	if h.state("g") != CompletingRebalance {
		t.Fatalf("state %v", h.state("g"))
	}
	// The leader's SyncGroup waits for persistence.
	h.manual = true
	s := h.sync("g", id, 1, map[string]string{id: "A"})
	if h.syncResp(s) != nil {
		t.Fatal("sync answered before the group record was persisted")
	}
	if len(h.held) != 1 || len(h.held[0].Records) != 1 {
		t.Fatalf("want one group record, got %+v", h.held)
	}
	h.persistAll()
	h.mustSync(s, 0, "A")
	if h.state("g") != Stable {
		t.Fatalf("state %v", h.state("g"))
	}
	if code := h.heartbeat("g", id, 1, ""); code != 0 {
		t.Fatalf("heartbeat %v", errName(code))
	}
	// Heartbeats keep the member alive past its session timeout.
	for range 5 {
		h.advance(8 * time.Second)
		if code := h.heartbeat("g", id, 1, ""); code != 0 {
			t.Fatalf("heartbeat %v", errName(code))
		}
	}
	if h.state("g") != Stable {
		t.Fatalf("state %v", h.state("g"))
	}
}

func TestSecondMemberTriggersRebalance(t *testing.T) {
	h := newHarness(t, Config{})
	a, gen := h.stableMember("g", joinOpt{}, "A-all")
	// B joins (v3: no MEMBER_ID_REQUIRED): a rebalance starts.
	rb := h.join("g", "", joinOpt{version: 3})
	if h.state("g") != PreparingRebalance || h.joinResp(rb) != nil {
		t.Fatal("B's join should wait for the rebalance")
	}
	if code := h.heartbeat("g", a, gen, ""); code != kerr.RebalanceInProgress.Code {
		t.Fatalf("A heartbeat %v", errName(code))
	}
	ra := h.join("g", a, joinOpt{})
	jb := h.mustJoin(rb, 0)
	ja := h.mustJoin(ra, 0)
	if ja.Generation != gen+1 || jb.Generation != gen+1 {
		t.Fatal("generation did not advance")
	}
	if ja.LeaderID != a || len(ja.Members) != 2 || len(jb.Members) != 0 {
		t.Fatalf("leader %q members %d/%d", ja.LeaderID, len(ja.Members), len(jb.Members))
	}
	b := jb.MemberID
	// B syncs first and waits for the leader.
	sb := h.sync("g", b, jb.Generation, nil)
	if h.syncResp(sb) != nil {
		t.Fatal("follower sync answered before the leader's")
	}
	sa := h.sync("g", a, ja.Generation, map[string]string{a: "A-half", b: "B-half"})
	h.mustSync(sa, 0, "A-half")
	h.mustSync(sb, 0, "B-half")
	if h.state("g") != Stable {
		t.Fatalf("state %v", h.state("g"))
	}
}

func TestLeave(t *testing.T) {
	h := newHarness(t, Config{InitialRebalanceDelay: -1})
	a, _ := h.stableMember("g", joinOpt{}, "A")
	rb := h.join("g", "", joinOpt{version: 3})
	ra := h.join("g", a, joinOpt{})
	jb := h.mustJoin(rb, 0)
	ja := h.mustJoin(ra, 0)
	sa := h.sync("g", a, ja.Generation, map[string]string{a: "A1", jb.MemberID: "B1"})
	h.mustSync(sa, 0, "A1")
	// B leaves: rebalance; unknown members get UNKNOWN_MEMBER_ID.
	resp := h.leave("g", kmsg.LeaveGroupRequestMember{MemberID: jb.MemberID}, kmsg.LeaveGroupRequestMember{MemberID: "nobody"})
	if resp.ErrorCode != 0 || resp.Members[0].ErrorCode != 0 || resp.Members[1].ErrorCode != kerr.UnknownMemberID.Code {
		t.Fatalf("leave %+v", resp)
	}
	if h.state("g") != PreparingRebalance {
		t.Fatalf("state %v", h.state("g"))
	}
	ra = h.join("g", a, joinOpt{})
	ja = h.mustJoin(ra, 0)
	if len(ja.Members) != 1 {
		t.Fatalf("members %d", len(ja.Members))
	}
	// The last member leaves: the group is Empty with a new generation.
	h.leave("g", kmsg.LeaveGroupRequestMember{MemberID: a})
	if h.state("g") != Empty || h.c.groups["g"].generation != ja.Generation+1 {
		t.Fatalf("state %v gen %d", h.state("g"), h.c.groups["g"].generation)
	}
	// v0-v2 leave of an unknown member: top-level error.
	req := kmsg.NewPtrLeaveGroupRequest()
	req.Version = 1
	req.Group, req.MemberID = "g", a
	r := h.reply()
	h.take(h.c.LeaveGroup(h.now, r, req))
	if code := h.resps[r].(*kmsg.LeaveGroupResponse).ErrorCode; code != kerr.UnknownMemberID.Code {
		t.Fatalf("v1 leave %v", errName(code))
	}
}

func TestSessionTimeoutExpiry(t *testing.T) {
	h := newHarness(t, Config{InitialRebalanceDelay: -1})
	a, _ := h.stableMember("g", joinOpt{session: 10 * time.Second}, "A")
	h.advance(9 * time.Second)
	if h.state("g") != Stable {
		t.Fatal("expired early")
	}
	h.advance(time.Second)
	if h.state("g") != Empty {
		t.Fatalf("state %v after session timeout", h.state("g"))
	}
	if code := h.heartbeat("g", a, 1, ""); code != kerr.UnknownMemberID.Code {
		t.Fatalf("heartbeat %v", errName(code))
	}
}

func TestSilentMemberRemovedAtRebalanceTimeout(t *testing.T) {
	h := newHarness(t, Config{InitialRebalanceDelay: -1})
	a, _ := h.stableMember("g", joinOpt{session: 60 * time.Second, rebal: 20 * time.Second}, "A")
	// B joins; A heartbeats (so its session lives) but never rejoins.
	rb := h.join("g", "", joinOpt{version: 3, session: 60 * time.Second, rebal: 20 * time.Second})
	for range 3 {
		h.advance(6 * time.Second)
		h.heartbeat("g", a, 1, "")
	}
	if h.joinResp(rb) != nil {
		t.Fatal("answered before the rebalance timeout")
	}
	h.advance(2 * time.Second)
	jb := h.mustJoin(rb, 0)
	if jb.LeaderID != jb.MemberID || len(jb.Members) != 1 {
		t.Fatalf("B should lead alone: %+v", jb)
	}
	if code := h.heartbeat("g", a, 1, ""); code != kerr.UnknownMemberID.Code {
		t.Fatalf("A heartbeat %v", errName(code))
	}
}

func TestLeaderNeverSyncsIsRemoved(t *testing.T) {
	h := newHarness(t, Config{InitialRebalanceDelay: -1})
	a, _ := h.stableMember("g", joinOpt{rebal: 20 * time.Second}, "A")
	rb := h.join("g", "", joinOpt{version: 3, rebal: 20 * time.Second})
	ra := h.join("g", a, joinOpt{rebal: 20 * time.Second})
	h.mustJoin(ra, 0)
	jb := h.mustJoin(rb, 0)
	sb := h.sync("g", jb.MemberID, jb.Generation, nil)
	// A (the leader) heartbeats but never sends SyncGroup.
	for range 3 {
		h.advance(6 * time.Second)
		if code := h.heartbeat("g", a, jb.Generation, ""); code != 0 {
			t.Fatalf("heartbeat in CompletingRebalance: %v", errName(code))
		}
	}
	h.advance(2 * time.Second)
	h.mustSync(sb, kerr.RebalanceInProgress.Code, "")
	if _, ok := h.c.groups["g"].members[a]; ok {
		t.Fatal("leader that never synced is still a member")
	}
	// B rejoins and leads.
	r := h.join("g", jb.MemberID, joinOpt{version: 3})
	if j := h.mustJoin(r, 0); j.LeaderID != jb.MemberID {
		t.Fatalf("leader %q", j.LeaderID)
	}
}

func TestStaticMemberRejoinWithoutRebalance(t *testing.T) {
	h := newHarness(t, Config{InitialRebalanceDelay: -1})
	oa := joinOpt{instance: "ia"}
	ob := joinOpt{instance: "ib"}
	ra := h.join("g", "", oa) // static: no MEMBER_ID_REQUIRED
	ja := h.mustJoin(ra, 0)
	a := ja.MemberID
	rb := h.join("g", "", ob)
	ra = h.join("g", a, oa)
	ja = h.mustJoin(ra, 0)
	jb := h.mustJoin(rb, 0)
	b := jb.MemberID
	gen := ja.Generation
	sb := h.sync("g", b, gen, nil)
	sa := h.sync("g", a, gen, map[string]string{a: "A", b: "B"})
	h.mustSync(sa, 0, "A")
	h.mustSync(sb, 0, "B")

	// B restarts: same instance id, no member id.
	h.manual = true
	rb2 := h.join("g", "", ob)
	if h.joinResp(rb2) != nil {
		t.Fatal("static rejoin answered before the new id was persisted")
	}
	h.persistAll()
	h.manual = false
	jb2 := h.mustJoin(rb2, 0)
	if jb2.MemberID == b || jb2.Generation != gen || jb2.LeaderID != a || len(jb2.Members) != 0 {
		t.Fatalf("static rejoin %+v", jb2)
	}
	if h.state("g") != Stable {
		t.Fatalf("static rejoin caused a rebalance: %v", h.state("g"))
	}
	s := h.sync("g", jb2.MemberID, gen, nil)
	h.mustSync(s, 0, "B")
	// The old id is fenced.
	if code := h.heartbeat("g", b, gen, "ib"); code != kerr.FencedInstanceID.Code {
		t.Fatalf("old static member heartbeat %v", errName(code))
	}
	if code := h.heartbeat("g", jb2.MemberID, gen, "ib"); code != 0 {
		t.Fatalf("new static member heartbeat %v", errName(code))
	}
	// The leader rejoining statically with v9 gets the members and SkipAssignment.
	ra2 := h.join("g", "", oa)
	ja2 := h.mustJoin(ra2, 0)
	if !ja2.SkipAssignment || ja2.LeaderID != ja2.MemberID || len(ja2.Members) != 2 || h.state("g") != Stable {
		t.Fatalf("static leader rejoin %+v state %v", ja2, h.state("g"))
	}
	// A static rejoin with a changed protocol rebalances.
	h.join("g", "", joinOpt{instance: "ib", protos: []string{"roundrobin", "range"}})
	if h.state("g") != Stable {
		// range is still the only common protocol, so no rebalance.
		t.Fatalf("state %v", h.state("g"))
	}
	// A LeaveGroup by instance id with the wrong member id is fenced.
	lr := h.leave("g", kmsg.LeaveGroupRequestMember{MemberID: b, InstanceID: strp("ib")})
	if lr.Members[0].ErrorCode != kerr.FencedInstanceID.Code {
		t.Fatalf("leave %v", errName(lr.Members[0].ErrorCode))
	}
}

func TestInitialRebalanceDelay(t *testing.T) {
	h := newHarness(t, Config{InitialRebalanceDelay: 3 * time.Second})
	o := joinOpt{version: 3, rebal: 10 * time.Second}
	r1 := h.join("g", "", o)
	h.advance(2 * time.Second)
	r2 := h.join("g", "", o) // extends the delay to t+5s
	h.advance(2 * time.Second)
	if h.joinResp(r1) != nil || h.joinResp(r2) != nil {
		t.Fatal("answered inside the (extended) delay")
	}
	h.advance(time.Second)
	j1, j2 := h.mustJoin(r1, 0), h.mustJoin(r2, 0)
	if j1.Generation != 1 || j2.Generation != 1 || len(j1.Members) != 2 {
		t.Fatalf("one generation for both: %+v %+v", j1, j2)
	}
	// A later rebalance of a non-empty group has no delay.
	r3 := h.join("g", "", o)
	h.join("g", j1.MemberID, o)
	h.join("g", j2.MemberID, o)
	if j := h.mustJoin(r3, 0); j.Generation != 2 {
		t.Fatalf("gen %d", j.Generation)
	}
	// The delay is bounded by the rebalance timeout.
	h2 := newHarness(t, Config{InitialRebalanceDelay: 3 * time.Second})
	o2 := joinOpt{version: 3, rebal: 4 * time.Second}
	first := h2.join("x", "", o2)
	for range 3 {
		h2.advance(2 * time.Second)
		h2.join("x", "", o2)
		if h2.joinResp(first) != nil {
			break
		}
	}
	if h2.joinResp(first) == nil {
		t.Fatal("the initial delay grew past the rebalance timeout")
	}
}

func TestMemberIDRequiredFlow(t *testing.T) {
	h := newHarness(t, Config{InitialRebalanceDelay: -1, MinSessionTimeout: time.Second})
	r := h.join("g", "", joinOpt{session: 5 * time.Second})
	id := h.mustJoin(r, kerr.MemberIDRequired.Code).MemberID
	// An id that was never handed out is unknown.
	r = h.join("g", "made-up", joinOpt{})
	h.mustJoin(r, kerr.UnknownMemberID.Code)
	// The pending id expires after the session timeout if unused, and the
	// group, holding nothing, goes away.
	h.advance(5 * time.Second)
	if h.state("g") != Dead {
		t.Fatalf("state %v", h.state("g"))
	}
	r = h.join("g", id, joinOpt{})
	h.mustJoin(r, kerr.UnknownMemberID.Code)
	// Used in time, it joins.
	r = h.join("g", "", joinOpt{})
	id = h.mustJoin(r, kerr.MemberIDRequired.Code).MemberID
	r = h.join("g", id, joinOpt{})
	if j := h.mustJoin(r, 0); j.MemberID != id {
		t.Fatalf("member id %q, want %q", j.MemberID, id)
	}
}

func TestFencingErrors(t *testing.T) {
	h := newHarness(t, Config{InitialRebalanceDelay: -1})
	a, gen := h.stableMember("g", joinOpt{instance: "ia"}, "A")

	joinCases := []struct {
		name     string
		group    string
		memberID string
		o        joinOpt
		want     int16
	}{
		{"session too short", "g", "", joinOpt{session: time.Second}, kerr.InvalidSessionTimeout.Code},
		{"session too long", "g", "", joinOpt{session: time.Hour}, kerr.InvalidSessionTimeout.Code},
		{"other protocol type", "g", "", joinOpt{version: 3, ptype: "connect"}, kerr.InconsistentGroupProtocol.Code},
		{"no common protocol", "g", "", joinOpt{version: 3, protos: []string{"sticky"}}, kerr.InconsistentGroupProtocol.Code},
		{"unknown member", "g", "ghost", joinOpt{}, kerr.UnknownMemberID.Code},
		{"unknown member, no group", "nogroup", "ghost", joinOpt{}, kerr.UnknownMemberID.Code},
		{"instance with other member id", "g", "ghost", joinOpt{instance: "ia"}, kerr.FencedInstanceID.Code},
		{"empty group id", "", "", joinOpt{}, kerr.InvalidGroupID.Code},
	}
	for _, tc := range joinCases {
		r := h.join(tc.group, tc.memberID, tc.o)
		if got := h.mustJoin(r, tc.want); got == nil {
			t.Fatal(tc.name)
		}
	}
	hbCases := []struct {
		name     string
		group    string
		memberID string
		gen      int32
		instance string
		want     int16
	}{
		{"ok", "g", a, gen, "ia", 0},
		{"unknown group", "nogroup", a, gen, "", kerr.UnknownMemberID.Code},
		{"unknown member", "g", "ghost", gen, "", kerr.UnknownMemberID.Code},
		{"illegal generation", "g", a, gen + 7, "", kerr.IllegalGeneration.Code},
		{"fenced instance", "g", "ghost", gen, "ia", kerr.FencedInstanceID.Code},
	}
	for _, tc := range hbCases {
		if got := h.heartbeat(tc.group, tc.memberID, tc.gen, tc.instance); got != tc.want {
			t.Errorf("heartbeat %s: %v, want %v", tc.name, errName(got), errName(tc.want))
		}
	}
	// SyncGroup errors.
	s := h.sync("g", a, gen+1, nil)
	h.mustSync(s, kerr.IllegalGeneration.Code, "")
	s = h.sync("g", "ghost", gen, nil)
	h.mustSync(s, kerr.UnknownMemberID.Code, "")
	s = h.sync("nogroup", a, gen, nil)
	h.mustSync(s, kerr.UnknownMemberID.Code, "")
	req := kmsg.NewPtrSyncGroupRequest()
	req.Version, req.Group, req.MemberID, req.Generation, req.Protocol = 5, "g", a, gen, strp("roundrobin")
	r := h.reply()
	h.take(h.c.SyncGroup(h.now, r, req))
	h.mustSync(r, kerr.InconsistentGroupProtocol.Code, "")
	// During a rebalance: heartbeats and syncs say REBALANCE_IN_PROGRESS,
	// commits of the current generation are still accepted.
	h.join("g", "", joinOpt{version: 3})
	if code := h.heartbeat("g", a, gen, ""); code != kerr.RebalanceInProgress.Code {
		t.Fatalf("heartbeat %v", errName(code))
	}
	s = h.sync("g", a, gen, nil)
	h.mustSync(s, kerr.RebalanceInProgress.Code, "")
	c := h.commit("g", a, gen, "t", 0, 5)
	if code, _ := h.commitCode(c); code != 0 {
		t.Fatalf("commit while preparing %v", errName(code))
	}
	// Commit errors.
	commitCases := []struct {
		name     string
		group    string
		memberID string
		gen      int32
		want     int16
	}{
		{"simple commit to a non-empty group", "g", "", -1, kerr.UnknownMemberID.Code},
		{"illegal generation", "g", a, gen + 3, kerr.IllegalGeneration.Code},
		{"unknown member", "g", "ghost", gen, kerr.UnknownMemberID.Code},
		{"generation for a missing group", "nogroup", "ghost", 4, kerr.IllegalGeneration.Code},
	}
	for _, tc := range commitCases {
		r := h.commit(tc.group, tc.memberID, tc.gen, "t", 0, 1)
		if code, _ := h.commitCode(r); code != tc.want {
			t.Errorf("commit %s: %v, want %v", tc.name, errName(code), errName(tc.want))
		}
	}
	// Complete the join: a commit in CompletingRebalance is REBALANCE_IN_PROGRESS.
	ra := h.join("g", a, joinOpt{instance: "ia"})
	ja := h.mustJoin(ra, 0)
	c = h.commit("g", a, ja.Generation, "t", 0, 6)
	if code, _ := h.commitCode(c); code != kerr.RebalanceInProgress.Code {
		t.Fatalf("commit while completing %v", errName(code))
	}
}

func TestListAndDescribeGroups(t *testing.T) {
	h := newHarness(t, Config{InitialRebalanceDelay: -1})
	a, _ := h.stableMember("s", joinOpt{}, "A")
	h.commit("e", "", -1, "t", 0, 1)
	lreq := kmsg.NewPtrListGroupsRequest()
	lreq.Version = 4
	lreq.StatesFilter = []string{"stable"}
	r := h.reply()
	h.take(h.c.ListGroups(h.now, r, lreq))
	gs := h.resps[r].(*kmsg.ListGroupsResponse).Groups
	if len(gs) != 1 || gs[0].Group != "s" || gs[0].GroupState != "Stable" || gs[0].ProtocolType != "consumer" {
		t.Fatalf("list %+v", gs)
	}
	lreq.StatesFilter = nil
	r = h.reply()
	h.take(h.c.ListGroups(h.now, r, lreq))
	if gs := h.resps[r].(*kmsg.ListGroupsResponse).Groups; len(gs) != 2 || gs[0].Group != "e" {
		t.Fatalf("list %+v", gs)
	}
	dreq := kmsg.NewPtrDescribeGroupsRequest()
	dreq.Version = 6
	dreq.Groups = []string{"s", "missing"}
	r = h.reply()
	h.take(h.c.DescribeGroups(h.now, r, dreq))
	dg := h.resps[r].(*kmsg.DescribeGroupsResponse).Groups
	if dg[0].State != "Stable" || dg[0].Protocol != "range" || len(dg[0].Members) != 1 ||
		dg[0].Members[0].MemberID != a || string(dg[0].Members[0].MemberAssignment) != "A" || dg[0].Members[0].ClientID != "cli" {
		t.Fatalf("describe %+v", dg[0])
	}
	if dg[1].ErrorCode != kerr.GroupIDNotFound.Code || dg[1].State != "Dead" {
		t.Fatalf("describe missing %+v", dg[1])
	}
	// Handle dispatches by request type and declines what it does not own.
	hb := kmsg.NewPtrHeartbeatRequest()
	hb.Group, hb.MemberID, hb.Generation = "s", a, 1
	rd, ok := h.c.Handle(h.now, 99, Client{}, hb)
	if !ok || len(rd.Send) != 1 || rd.Send[0].Reply != 99 || rd.Send[0].Response.(*kmsg.HeartbeatResponse).ErrorCode != 0 {
		t.Fatalf("Handle heartbeat %+v %v", rd, ok)
	}
	if _, ok := h.c.Handle(h.now, 100, Client{}, kmsg.NewPtrMetadataRequest()); ok {
		t.Fatal("Handle accepted a Metadata request")
	}
	// The next deadline is the member's session.
	if at, ok := h.c.NextDeadline(); !ok || !at.Equal(h.now.Add(10*time.Second)) {
		t.Fatalf("next deadline %v %v", at, ok)
	}
}
