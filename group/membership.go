package group

import (
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func ms(d time.Duration) int32 { return int32(d / time.Millisecond) }

func strp(s string) *string { return &s }

func (c *Coordinator) joinError(reply ReplyID, version int16, code int16, memberID string) {
	resp := kmsg.NewPtrJoinGroupResponse()
	resp.Version = version
	resp.ErrorCode = code
	resp.Generation = -1
	resp.MemberID = memberID
	if version >= 7 {
		resp.Protocol = nil
	} else {
		resp.Protocol = strp("")
	}
	c.send(reply, resp)
}

// JoinGroup handles a JoinGroupRequest. The response may be parked until
// the rebalance completes and arrive from a later call.
func (c *Coordinator) JoinGroup(now time.Time, reply ReplyID, cl Client, req *kmsg.JoinGroupRequest) Ready {
	c.joinGroup(now, reply, cl, req)
	return c.flush()
}

func (c *Coordinator) joinGroup(now time.Time, reply ReplyID, cl Client, req *kmsg.JoinGroupRequest) {
	v := req.Version
	if req.Group == "" {
		c.joinError(reply, v, kerr.InvalidGroupID.Code, req.MemberID)
		return
	}
	if cg := c.cgroups[req.Group]; cg != nil {
		if len(cg.members) > 0 {
			// Kafka's answer to a classic member joining a consumer group it cannot convert.
			c.joinError(reply, v, kerr.InconsistentGroupProtocol.Code, req.MemberID)
			return
		}
		// An empty consumer group becomes a classic one, keeping its offsets (which both
		// protocols keep in the same place).
		c.deleteConsumerGroup(cg)
	}
	session := time.Duration(req.SessionTimeoutMillis) * time.Millisecond
	if session < c.cfg.MinSessionTimeout || session > c.cfg.MaxSessionTimeout {
		c.joinError(reply, v, kerr.InvalidSessionTimeout.Code, req.MemberID)
		return
	}
	rebalance := time.Duration(req.RebalanceTimeoutMillis) * time.Millisecond
	if v == 0 || rebalance <= 0 {
		rebalance = session
	}
	protos := make([]protocol, len(req.Protocols))
	for i, p := range req.Protocols {
		protos[i] = protocol{name: p.Name, metadata: p.Metadata}
	}
	if req.ProtocolType == "" || len(protos) == 0 {
		c.joinError(reply, v, kerr.InconsistentGroupProtocol.Code, req.MemberID)
		return
	}
	instance := req.InstanceID
	if v < 5 {
		instance = nil
	}
	g := c.groups[req.Group]
	if g == nil {
		if req.MemberID != "" {
			c.joinError(reply, v, kerr.UnknownMemberID.Code, req.MemberID)
			return
		}
		g = c.newGroup(req.Group, now)
	}
	if g.state == Dead {
		c.joinError(reply, v, kerr.CoordinatorNotAvailable.Code, req.MemberID)
		return
	}
	var known *member
	if req.MemberID != "" {
		known = g.members[req.MemberID]
	}
	if !g.supports(req.ProtocolType, protos, known) {
		c.joinError(reply, v, kerr.InconsistentGroupProtocol.Code, req.MemberID)
		return
	}
	upd := func(m *member) {
		m.clientID, m.clientHost = cl.ID, cl.Host
		m.session, m.rebalance = session, rebalance
		m.protocolType, m.protocols = req.ProtocolType, protos
	}

	if req.MemberID == "" {
		if instance != nil {
			if old := g.instances[*instance]; old != nil {
				c.replaceStatic(now, g, old, reply, v, cl, func() { upd(old) })
				return
			}
		} else if v >= 4 {
			id := c.newMemberID(cl.ID)
			t := newTimer(timerPending, g)
			t.id = id
			g.pendingIDs[id] = t
			c.arm(t, now.Add(session))
			c.joinError(reply, v, kerr.MemberIDRequired.Code, id)
			return
		}
		m := &member{id: c.newMemberID(cl.ID), instanceID: instance}
		upd(m)
		c.addAndRebalance(now, g, m, reply, v)
		return
	}

	// A known (or pending) member id.
	if instance != nil {
		if old := g.instances[*instance]; old != nil && old.id != req.MemberID {
			c.joinError(reply, v, kerr.FencedInstanceID.Code, req.MemberID)
			return
		}
	}
	if t, ok := g.pendingIDs[req.MemberID]; ok {
		c.disarm(t)
		delete(g.pendingIDs, req.MemberID)
		m := &member{id: req.MemberID, instanceID: instance}
		upd(m)
		c.addAndRebalance(now, g, m, reply, v)
		return
	}
	m := known
	if m == nil {
		c.joinError(reply, v, kerr.UnknownMemberID.Code, req.MemberID)
		return
	}
	changed := m.protocolType != req.ProtocolType || !protocolsEqual(m.protocols, protos)
	upd(m)
	c.touchSession(now, m)
	switch g.state {
	case PreparingRebalance:
		c.parkJoin(m, reply, v)
		c.maybeCompleteJoin(now, g)
	case CompletingRebalance:
		if !changed {
			// Same metadata: the join response of this generation again.
			c.send(reply, c.joinResponse(g, m, v, g.leader == m.id))
			return
		}
		c.parkJoin(m, reply, v)
		c.prepareRebalance(now, g)
	case Stable:
		if g.leader != m.id && !changed {
			c.send(reply, c.joinResponse(g, m, v, false))
			return
		}
		// The leader rejoining, or a changed subscription: rebalance.
		c.parkJoin(m, reply, v)
		c.prepareRebalance(now, g)
	default:
		c.joinError(reply, v, kerr.UnknownMemberID.Code, req.MemberID)
	}
}

func (c *Coordinator) parkJoin(m *member, reply ReplyID, v int16) {
	if m.joinWaiting {
		// A second join replaces the first; the first must still be
		// answered so the connection's in-order queue moves on.
		c.joinError(m.joinReply, m.joinVersion, kerr.RebalanceInProgress.Code, m.id)
	}
	m.joinWaiting, m.joinReply, m.joinVersion = true, reply, v
}

func (c *Coordinator) parkSync(m *member, reply ReplyID, v int16) {
	if m.syncWaiting {
		c.syncError(m.syncReply, m.syncVersion, kerr.RebalanceInProgress.Code)
	}
	m.syncWaiting, m.syncReply, m.syncVersion = true, reply, v
}

func (c *Coordinator) touchSession(now time.Time, m *member) {
	c.arm(m.timer, now.Add(m.session))
}

// addAndRebalance adds a new member whose join waits for the rebalance.
func (c *Coordinator) addAndRebalance(now time.Time, g *group, m *member, reply ReplyID, v int16) {
	m.timer = newTimer(timerSession, g)
	m.timer.m = m
	if len(g.order) == 0 {
		g.protocolType = m.protocolType
	}
	g.addMember(m)
	c.touchSession(now, m)
	c.parkJoin(m, reply, v)
	switch g.state {
	case Empty:
		c.prepareRebalance(now, g)
	case PreparingRebalance:
		if g.initialDelay {
			// Each new member in the initial delay extends it, up to the
			// rebalance timeout.
			at := now.Add(c.cfg.InitialRebalanceDelay)
			g.rebalanceEndsBy = maxTime(g.rebalanceEndsBy, g.stateSince.Add(g.maxRebalance()))
			c.arm(g.joinTimer, minTime(at, g.rebalanceEndsBy))
		}
		c.maybeCompleteJoin(now, g)
	default:
		c.prepareRebalance(now, g)
	}
}

// replaceStatic gives a rejoining static member a new id, fencing the old.
func (c *Coordinator) replaceStatic(now time.Time, g *group, m *member, reply ReplyID, v int16, cl Client, update func()) {
	if m.joinWaiting {
		c.joinError(m.joinReply, m.joinVersion, kerr.FencedInstanceID.Code, m.id)
		m.joinWaiting = false
	}
	if m.syncWaiting {
		c.syncError(m.syncReply, m.syncVersion, kerr.FencedInstanceID.Code)
		m.syncWaiting = false
	}
	oldID := m.id
	newID := c.newMemberID(cl.ID)
	delete(g.members, oldID)
	m.id = newID
	g.members[newID] = m
	if g.leader == oldID {
		g.leader = newID
	}
	update()
	c.touchSession(now, m)
	switch g.state {
	case Stable:
		if g.selectProtocol() == g.protocol {
			// Same protocol: keep the assignment, persist the new id, and
			// answer once it is durable. No rebalance.
			c.persistGroup(g, now)
			gen := g.generation
			isLeader := g.leader == m.id
			c.afterPersist(func(now time.Time, code int16) {
				if code != 0 {
					c.joinError(reply, v, code, newID)
					return
				}
				if m.removed || c.groups[g.name] != g || g.generation != gen {
					c.joinError(reply, v, kerr.RebalanceInProgress.Code, newID)
					return
				}
				resp := c.joinResponse(g, m, v, isLeader && v >= 9)
				resp.SkipAssignment = isLeader && v >= 9
				c.send(reply, resp)
			})
			return
		}
		c.parkJoin(m, reply, v)
		c.prepareRebalance(now, g)
	case CompletingRebalance:
		// The leader may already be assigning to the old id: rebalance.
		c.parkJoin(m, reply, v)
		c.prepareRebalance(now, g)
	case PreparingRebalance:
		c.parkJoin(m, reply, v)
		c.maybeCompleteJoin(now, g)
	default:
		c.parkJoin(m, reply, v)
		c.prepareRebalance(now, g)
	}
}

// joinResponse is the successful JoinGroup answer for the current generation.
func (c *Coordinator) joinResponse(g *group, m *member, v int16, withMembers bool) *kmsg.JoinGroupResponse {
	resp := kmsg.NewPtrJoinGroupResponse()
	resp.Version = v
	resp.Generation = g.generation
	resp.ProtocolType = strp(g.protocolType)
	resp.Protocol = strp(g.protocol)
	resp.LeaderID = g.leader
	resp.MemberID = m.id
	if withMembers {
		for _, o := range g.order {
			jm := kmsg.NewJoinGroupResponseMember()
			jm.MemberID = o.id
			jm.InstanceID = o.instanceID
			jm.ProtocolMetadata = o.metadataFor(g.protocol)
			resp.Members = append(resp.Members, jm)
		}
	}
	return resp
}

// prepareRebalance moves the group to PreparingRebalance.
func (c *Coordinator) prepareRebalance(now time.Time, g *group) {
	if g.state == CompletingRebalance || g.state == Stable {
		for _, m := range g.order {
			m.assignment = nil
			if m.syncWaiting {
				c.syncError(m.syncReply, m.syncVersion, kerr.RebalanceInProgress.Code)
				m.syncWaiting = false
			}
		}
	}
	c.disarm(g.syncTimer)
	c.disarm(g.retentionTimer)
	g.syncInFlight = false
	wasEmpty := g.state == Empty
	g.state = PreparingRebalance
	g.stateSince = now
	if wasEmpty && c.cfg.InitialRebalanceDelay > 0 {
		g.initialDelay = true
		g.rebalanceEndsBy = now.Add(g.maxRebalance())
		c.arm(g.joinTimer, minTime(now.Add(c.cfg.InitialRebalanceDelay), g.rebalanceEndsBy))
		return
	}
	g.initialDelay = false
	c.arm(g.joinTimer, now.Add(g.maxRebalance()))
	c.maybeCompleteJoin(now, g)
}

func (c *Coordinator) maybeCompleteJoin(now time.Time, g *group) {
	if g.state == PreparingRebalance && !g.initialDelay && g.allJoined() {
		c.completeJoin(now, g)
	}
}

// completeJoin ends the join phase: members that did not rejoin are
// removed, the generation advances, and every waiting join is answered.
func (c *Coordinator) completeJoin(now time.Time, g *group) {
	if g.state != PreparingRebalance {
		return
	}
	c.disarm(g.joinTimer)
	g.initialDelay = false
	for _, m := range append([]*member(nil), g.order...) {
		if !m.joinWaiting {
			c.removeMember(g, m, kerr.UnknownMemberID.Code)
		}
	}
	g.generation++
	g.stateSince = now
	if len(g.order) == 0 {
		g.state = Empty
		g.protocol = ""
		g.leader = ""
		c.persistGroup(g, now)
		c.armRetention(now, g)
		return
	}
	g.protocol = g.selectProtocol()
	if g.leader == "" || g.members[g.leader] == nil {
		g.leader = g.order[0].id
	}
	g.state = CompletingRebalance
	for _, m := range g.order {
		m.synced = false
		m.joinWaiting = false
		c.send(m.joinReply, c.joinResponse(g, m, m.joinVersion, m.id == g.leader))
		c.touchSession(now, m)
	}
	c.arm(g.syncTimer, now.Add(g.maxRebalance()))
}

// removeMember takes m out of g, answering its waiting requests with code.
// The caller decides what the group does next (see memberLeft).
func (c *Coordinator) removeMember(g *group, m *member, code int16) {
	if m.joinWaiting {
		c.joinError(m.joinReply, m.joinVersion, code, m.id)
		m.joinWaiting = false
	}
	if m.syncWaiting {
		c.syncError(m.syncReply, m.syncVersion, code)
		m.syncWaiting = false
	}
	c.disarm(m.timer)
	g.dropMember(m)
}

// memberLeft reacts to a removal outside the join phase's own cleanup.
func (c *Coordinator) memberLeft(now time.Time, g *group) {
	switch g.state {
	case Stable, CompletingRebalance:
		c.prepareRebalance(now, g)
	case PreparingRebalance:
		c.maybeCompleteJoin(now, g)
	}
}

func (c *Coordinator) sessionExpired(now time.Time, g *group, m *member) {
	if m.removed {
		return
	}
	if m.joinWaiting || m.syncWaiting {
		// Waiting on us, not dead: the join and sync phases have their own
		// deadlines.
		c.touchSession(now, m)
		return
	}
	c.removeMember(g, m, kerr.UnknownMemberID.Code)
	c.memberLeft(now, g)
}

// syncExpired removes members that never sent SyncGroup for this
// generation (including a leader that never assigned).
func (c *Coordinator) syncExpired(now time.Time, g *group) {
	if g.state != CompletingRebalance && g.state != Stable {
		return
	}
	removed := false
	for _, m := range append([]*member(nil), g.order...) {
		if !m.synced {
			c.removeMember(g, m, kerr.UnknownMemberID.Code)
			removed = true
		}
	}
	if removed {
		c.memberLeft(now, g)
	}
}

func (c *Coordinator) syncError(reply ReplyID, v int16, code int16) {
	resp := kmsg.NewPtrSyncGroupResponse()
	resp.Version = v
	resp.ErrorCode = code
	c.send(reply, resp)
}

func (c *Coordinator) syncResponse(g *group, m *member, v int16) *kmsg.SyncGroupResponse {
	resp := kmsg.NewPtrSyncGroupResponse()
	resp.Version = v
	resp.ProtocolType = strp(g.protocolType)
	resp.Protocol = strp(g.protocol)
	resp.MemberAssignment = m.assignment
	if resp.MemberAssignment == nil {
		resp.MemberAssignment = []byte{}
	}
	return resp
}

// validateMember is Kafka's check of (member, instance, generation).
func (g *group) validateMember(memberID string, instance *string, generation int32) (*member, int16) {
	if instance != nil {
		if m := g.instances[*instance]; m != nil && m.id != memberID {
			return nil, kerr.FencedInstanceID.Code
		}
	}
	m := g.members[memberID]
	if m == nil {
		return nil, kerr.UnknownMemberID.Code
	}
	if generation != g.generation {
		return nil, kerr.IllegalGeneration.Code
	}
	return m, 0
}

// SyncGroup handles a SyncGroupRequest. In CompletingRebalance the
// response waits for the leader's assignment and for its persistence.
func (c *Coordinator) SyncGroup(now time.Time, reply ReplyID, req *kmsg.SyncGroupRequest) Ready {
	c.syncGroup(now, reply, req)
	return c.flush()
}

func (c *Coordinator) syncGroup(now time.Time, reply ReplyID, req *kmsg.SyncGroupRequest) {
	v := req.Version
	g := c.groups[req.Group]
	if g == nil {
		c.syncError(reply, v, kerr.UnknownMemberID.Code)
		return
	}
	instance := req.InstanceID
	if v < 3 {
		instance = nil
	}
	m, code := g.validateMember(req.MemberID, instance, req.Generation)
	if code != 0 {
		c.syncError(reply, v, code)
		return
	}
	if (req.ProtocolType != nil && *req.ProtocolType != g.protocolType) ||
		(req.Protocol != nil && *req.Protocol != g.protocol) {
		c.syncError(reply, v, kerr.InconsistentGroupProtocol.Code)
		return
	}
	c.touchSession(now, m)
	switch g.state {
	case PreparingRebalance:
		c.syncError(reply, v, kerr.RebalanceInProgress.Code)
	case Stable:
		c.markSynced(g, m)
		c.send(reply, c.syncResponse(g, m, v))
	case CompletingRebalance:
		c.parkSync(m, reply, v)
		c.markSynced(g, m)
		if m.id != g.leader || g.syncInFlight {
			return
		}
		for _, o := range g.order {
			o.assignment = []byte{}
		}
		for _, a := range req.GroupAssignment {
			if o := g.members[a.MemberID]; o != nil {
				o.assignment = a.MemberAssignment
			}
		}
		g.syncInFlight = true
		c.persistGroup(g, now)
		gen := g.generation
		c.afterPersist(func(now time.Time, code int16) {
			if c.groups[g.name] != g || g.generation != gen || g.state != CompletingRebalance || !g.syncInFlight {
				return // a later transition already answered the waiters
			}
			g.syncInFlight = false
			if code != 0 {
				for _, o := range g.order {
					if o.syncWaiting {
						c.syncError(o.syncReply, o.syncVersion, code)
						o.syncWaiting = false
					}
				}
				c.prepareRebalance(now, g)
				return
			}
			g.state = Stable
			g.stateSince = now
			for _, o := range g.order {
				if o.syncWaiting {
					c.send(o.syncReply, c.syncResponse(g, o, o.syncVersion))
					o.syncWaiting = false
				}
			}
		})
	default:
		c.syncError(reply, v, kerr.UnknownMemberID.Code)
	}
}

func (c *Coordinator) markSynced(g *group, m *member) {
	m.synced = true
	for _, o := range g.order {
		if !o.synced {
			return
		}
	}
	c.disarm(g.syncTimer)
}

// Heartbeat handles a HeartbeatRequest; it is always answered at once.
func (c *Coordinator) Heartbeat(now time.Time, reply ReplyID, req *kmsg.HeartbeatRequest) Ready {
	resp := kmsg.NewPtrHeartbeatResponse()
	resp.Version = req.Version
	resp.ErrorCode = c.heartbeat(now, req)
	c.send(reply, resp)
	return c.flush()
}

func (c *Coordinator) heartbeat(now time.Time, req *kmsg.HeartbeatRequest) int16 {
	g := c.groups[req.Group]
	if g == nil {
		return kerr.UnknownMemberID.Code
	}
	instance := req.InstanceID
	if req.Version < 3 {
		instance = nil
	}
	m, code := g.validateMember(req.MemberID, instance, req.Generation)
	if code != 0 {
		return code
	}
	switch g.state {
	case Empty:
		return kerr.UnknownMemberID.Code
	case PreparingRebalance:
		c.touchSession(now, m)
		return kerr.RebalanceInProgress.Code
	default:
		c.touchSession(now, m)
		return 0
	}
}

// LeaveGroup handles a LeaveGroupRequest (one member before v3, a batch
// from v3).
func (c *Coordinator) LeaveGroup(now time.Time, reply ReplyID, req *kmsg.LeaveGroupRequest) Ready {
	resp := kmsg.NewPtrLeaveGroupResponse()
	resp.Version = req.Version
	leaving := req.Members
	if req.Version < 3 {
		leaving = []kmsg.LeaveGroupRequestMember{{MemberID: req.MemberID}}
	}
	g := c.groups[req.Group]
	left := false
	for _, l := range leaving {
		rm := kmsg.NewLeaveGroupResponseMember()
		rm.MemberID, rm.InstanceID = l.MemberID, l.InstanceID
		rm.ErrorCode = c.leaveOne(g, l)
		if rm.ErrorCode == 0 {
			left = true
		}
		resp.Members = append(resp.Members, rm)
	}
	if g != nil && left {
		c.memberLeft(now, g)
	}
	if req.Version < 3 {
		resp.ErrorCode = resp.Members[0].ErrorCode
		resp.Members = nil
	}
	c.send(reply, resp)
	return c.flush()
}

func (c *Coordinator) leaveOne(g *group, l kmsg.LeaveGroupRequestMember) int16 {
	if g == nil {
		return kerr.UnknownMemberID.Code
	}
	var m *member
	if l.InstanceID != nil {
		m = g.instances[*l.InstanceID]
		if m == nil {
			return kerr.UnknownMemberID.Code
		}
		if l.MemberID != "" && l.MemberID != m.id {
			return kerr.FencedInstanceID.Code
		}
	} else {
		if t, ok := g.pendingIDs[l.MemberID]; ok {
			c.disarm(t)
			delete(g.pendingIDs, l.MemberID)
			return 0
		}
		m = g.members[l.MemberID]
		if m == nil {
			return kerr.UnknownMemberID.Code
		}
	}
	c.removeMember(g, m, kerr.UnknownMemberID.Code)
	return 0
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
