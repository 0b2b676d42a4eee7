package group

import (
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// OffsetCommit handles an OffsetCommitRequest. Accepted partitions are
// written as records; the response waits for Persisted. Versions 10+
// address topics by id, which the coordinator does not resolve: those
// partitions get UNKNOWN_TOPIC_ID (advertise OffsetCommit up to v9).
func (c *Coordinator) OffsetCommit(now time.Time, reply ReplyID, req *kmsg.OffsetCommitRequest) Ready {
	resp := kmsg.NewPtrOffsetCommitResponse()
	resp.Version = req.Version
	codes := make([][]int16, len(req.Topics))
	for i, t := range req.Topics {
		rt := kmsg.NewOffsetCommitResponseTopic()
		rt.Topic, rt.TopicID = t.Topic, t.TopicID
		codes[i] = make([]int16, len(t.Partitions))
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetCommitResponseTopicPartition()
			rp.Partition = p.Partition
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	fill := func(code int16) {
		for i := range codes {
			for j := range codes[i] {
				codes[i][j] = code
			}
		}
	}
	done := func() {
		for i := range resp.Topics {
			for j := range resp.Topics[i].Partitions {
				resp.Topics[i].Partitions[j].ErrorCode = codes[i][j]
			}
		}
		c.send(reply, resp)
	}
	if code := c.validateCommit(now, req); code != 0 {
		fill(code)
		done()
		return c.flush()
	}
	g := c.groups[req.Group]
	if g == nil {
		g = c.newGroup(req.Group, now) // a simple consumer's first commit
	}
	type write struct {
		i, j int
		tp   topicPartition
		off  committed
	}
	var writes []write
	for i, t := range req.Topics {
		for j, p := range t.Partitions {
			switch {
			case req.Version >= 10:
				codes[i][j] = kerr.UnknownTopicID.Code
			case c.cfg.Topics != nil && !c.cfg.Topics.PartitionExists(t.Topic, p.Partition):
				codes[i][j] = kerr.UnknownTopicOrPartition.Code
			case p.Metadata != nil && len(*p.Metadata) > c.cfg.MaxMetadataBytes:
				codes[i][j] = kerr.OffsetMetadataTooLarge.Code
			default:
				epoch := p.LeaderEpoch
				if req.Version < 6 {
					epoch = -1
				}
				var md string
				if p.Metadata != nil {
					md = *p.Metadata
				}
				w := write{i, j, topicPartition{t.Topic, p.Partition}, committed{p.Offset, epoch, md, now}}
				writes = append(writes, w)
				b := c.persistOffset(g.name, w.tp, offsetValue(w.off))
				g.inflight[w.tp]++
				g.lastWrite[w.tp] = b
			}
		}
	}
	if len(writes) == 0 {
		c.dropIfUnused(g)
		done()
		return c.flush()
	}
	batch := c.batch
	c.afterPersist(func(now time.Time, code int16) {
		live := c.groups[g.name] == g
		for _, w := range writes {
			codes[w.i][w.j] = code
			if !live {
				continue
			}
			if code == 0 && g.lastWrite[w.tp] == batch {
				g.offsets[w.tp] = w.off
			}
			// lastWrite only matters while a commit is in flight.
			if g.inflight[w.tp]--; g.inflight[w.tp] <= 0 {
				delete(g.inflight, w.tp)
				delete(g.lastWrite, w.tp)
			}
		}
		if live {
			if code == 0 {
				c.offsetsChanged(now, g)
			} else {
				c.dropIfUnused(g)
			}
		}
		done()
	})
	return c.flush()
}

// validateCommit is Kafka's check of who may commit: group members of the
// current generation, or anyone without a generation while the group is
// Empty (a "simple" consumer).
func (c *Coordinator) validateCommit(now time.Time, req *kmsg.OffsetCommitRequest) int16 {
	if req.Group == "" {
		return kerr.InvalidGroupID.Code
	}
	gen, memberID, instance := req.Generation, req.MemberID, req.InstanceID
	if req.Version < 1 {
		gen, memberID = -1, ""
	}
	if req.Version < 7 {
		instance = nil
	}
	if cg := c.cgroups[req.Group]; cg != nil {
		return c.validateConsumerCommit(cg, req)
	}
	g := c.groups[req.Group]
	if g == nil {
		if gen < 0 {
			return 0
		}
		return kerr.IllegalGeneration.Code
	}
	if g.state == Dead {
		return kerr.CoordinatorNotAvailable.Code
	}
	if gen >= 0 || memberID != "" || instance != nil {
		m, code := g.validateMember(memberID, instance, gen)
		if code != 0 {
			return code
		}
		if g.state == CompletingRebalance {
			return kerr.RebalanceInProgress.Code
		}
		c.touchSession(now, m)
		return 0
	}
	if g.state != Empty {
		return kerr.UnknownMemberID.Code
	}
	return 0
}

// offsetsChanged keeps the retention deadline right after commits land.
func (c *Coordinator) offsetsChanged(now time.Time, g *group) {
	if g.state == Empty && g.retentionTimer.idx < 0 {
		c.armRetention(now, g)
	}
}

// armRetention schedules offset expiry for an Empty group: consumer groups
// expire everything retention after they became Empty; simple groups
// (no protocol type) expire each offset retention after its commit.
func (c *Coordinator) armRetention(now time.Time, g *group) {
	if g.state != Empty {
		c.disarm(g.retentionTimer)
		return
	}
	var at time.Time
	if g.protocolType != "" {
		at = g.stateSince.Add(c.cfg.OffsetsRetention)
	} else {
		first := true
		for _, o := range g.offsets {
			t := o.commitTime.Add(c.cfg.OffsetsRetention)
			if first || t.Before(at) {
				at, first = t, false
			}
		}
		if first {
			at = now.Add(c.cfg.OffsetsRetention)
		}
	}
	c.arm(g.retentionTimer, at)
}

// expireOffsets drops expired offsets of an Empty group, and the group
// itself when nothing is left.
func (c *Coordinator) expireOffsets(now time.Time, g *group) {
	if g.state != Empty {
		return
	}
	var expired []topicPartition
	for tp, o := range g.offsets {
		base := o.commitTime
		if g.protocolType != "" {
			base = g.stateSince
		}
		if g.inflight[tp] == 0 && !base.Add(c.cfg.OffsetsRetention).After(now) {
			expired = append(expired, tp)
		}
	}
	sortTPs(expired)
	for _, tp := range expired {
		delete(g.offsets, tp)
		c.persistOffset(g.name, tp, nil)
	}
	if len(g.offsets) == 0 && len(g.inflight) == 0 && len(g.pendingIDs) == 0 && len(g.order) == 0 {
		c.deleteGroup(g)
		return
	}
	if len(g.offsets) > 0 {
		c.armRetention(now, g)
	}
}

// dropIfUnused forgets a group that holds nothing durable and nothing live
// (e.g. created by a commit that failed validation of every partition).
func (c *Coordinator) dropIfUnused(g *group) {
	if g.state == Empty && !g.everPersisted && !g.hasOffsets() && len(g.order) == 0 && len(g.pendingIDs) == 0 {
		c.disarm(g.retentionTimer)
		delete(c.groups, g.name)
		g.state = Dead
	}
}

// deleteGroup removes g, writing tombstones for everything it persisted.
func (c *Coordinator) deleteGroup(g *group) {
	var tps []topicPartition
	for tp := range g.offsets {
		tps = append(tps, tp)
	}
	for tp := range g.inflight {
		if _, ok := g.offsets[tp]; !ok {
			tps = append(tps, tp)
		}
	}
	sortTPs(tps)
	for _, tp := range tps {
		c.persistOffset(g.name, tp, nil)
	}
	if g.everPersisted {
		c.persist(Record{groupKey(g.name), nil})
	}
	c.disarm(g.joinTimer)
	c.disarm(g.syncTimer)
	c.disarm(g.retentionTimer)
	for _, t := range g.pendingIDs {
		c.disarm(t)
	}
	g.state = Dead
	delete(c.groups, g.name)
}

func sortTPs(tps []topicPartition) {
	slices.SortFunc(tps, func(a, b topicPartition) int {
		if c := strings.Compare(a.topic, b.topic); c != 0 {
			return c
		}
		return int(a.partition) - int(b.partition)
	})
}

type fetchedPartition struct {
	partition   int32
	offset      int64
	leaderEpoch int32
	metadata    string
	code        int16
}

type fetchedTopic struct {
	topic      string
	partitions []fetchedPartition
}

// fetchGroup returns the committed offsets of one group. topics nil means
// every committed partition.
func (c *Coordinator) fetchGroup(name string, topics []kmsg.OffsetFetchRequestTopic, all, requireStable bool) []fetchedTopic {
	g := c.groups[name]
	one := func(tp topicPartition) fetchedPartition {
		fp := fetchedPartition{partition: tp.partition, offset: -1, leaderEpoch: -1}
		if g == nil {
			return fp
		}
		if requireStable && (g.inflight[tp] > 0 || c.txnPending(name, tp)) {
			fp.code = kerr.UnstableOffsetCommit.Code
			return fp
		}
		if o, ok := g.offsets[tp]; ok {
			fp.offset, fp.leaderEpoch, fp.metadata = o.offset, o.leaderEpoch, o.metadata
		}
		return fp
	}
	var out []fetchedTopic
	if !all {
		for _, t := range topics {
			ft := fetchedTopic{topic: t.Topic}
			for _, p := range t.Partitions {
				ft.partitions = append(ft.partitions, one(topicPartition{t.Topic, p}))
			}
			out = append(out, ft)
		}
		return out
	}
	if g == nil {
		return nil
	}
	var tps []topicPartition
	for tp := range g.offsets {
		tps = append(tps, tp)
	}
	if requireStable {
		for tp := range g.inflight {
			if _, ok := g.offsets[tp]; !ok {
				tps = append(tps, tp)
			}
		}
	}
	sortTPs(tps)
	for _, tp := range tps {
		if len(out) == 0 || out[len(out)-1].topic != tp.topic {
			out = append(out, fetchedTopic{topic: tp.topic})
		}
		last := &out[len(out)-1]
		last.partitions = append(last.partitions, one(tp))
	}
	return out
}

// OffsetFetch handles an OffsetFetchRequest, single-group (v0-v7) or
// multi-group (v8+). It is answered at once. Versions 10+ address topics by
// id: advertise OffsetFetch up to v9.
func (c *Coordinator) OffsetFetch(now time.Time, reply ReplyID, req *kmsg.OffsetFetchRequest) Ready {
	resp := kmsg.NewPtrOffsetFetchResponse()
	resp.Version = req.Version
	stable := req.Version >= 7 && req.RequireStable
	if req.Version < 8 {
		all := req.Topics == nil && req.Version >= 2
		for _, ft := range c.fetchGroup(req.Group, req.Topics, all, stable) {
			rt := kmsg.NewOffsetFetchResponseTopic()
			rt.Topic = ft.topic
			for _, fp := range ft.partitions {
				rp := kmsg.NewOffsetFetchResponseTopicPartition()
				rp.Partition, rp.Offset, rp.LeaderEpoch = fp.partition, fp.offset, fp.leaderEpoch
				rp.Metadata, rp.ErrorCode = strp(fp.metadata), fp.code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		c.send(reply, resp)
		return c.flush()
	}
	for _, rg := range req.Groups {
		gr := kmsg.NewOffsetFetchResponseGroup()
		gr.Group = rg.Group
		var topics []kmsg.OffsetFetchRequestTopic
		for _, t := range rg.Topics {
			topics = append(topics, kmsg.OffsetFetchRequestTopic{Topic: t.Topic, Partitions: t.Partitions})
		}
		if req.Version >= 10 && rg.Topics != nil {
			gr.ErrorCode = kerr.UnsupportedVersion.Code
			resp.Groups = append(resp.Groups, gr)
			continue
		}
		if req.Version >= 9 && rg.MemberEpoch >= 0 && c.cgroups[rg.Group] != nil {
			// A consumer-protocol member fetching its offsets, at its epoch. (Classic members
			// send their generation here; their fetches are not checked, as before.)
			if gr.ErrorCode = c.validateConsumerFetch(rg.Group, rg.MemberID, rg.MemberEpoch); gr.ErrorCode != 0 {
				resp.Groups = append(resp.Groups, gr)
				continue
			}
		}
		for _, ft := range c.fetchGroup(rg.Group, topics, rg.Topics == nil, stable) {
			rt := kmsg.NewOffsetFetchResponseGroupTopic()
			rt.Topic = ft.topic
			for _, fp := range ft.partitions {
				rp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
				rp.Partition, rp.Offset, rp.LeaderEpoch = fp.partition, fp.offset, fp.leaderEpoch
				rp.Metadata, rp.ErrorCode = strp(fp.metadata), fp.code
				rt.Partitions = append(rt.Partitions, rp)
			}
			gr.Topics = append(gr.Topics, rt)
		}
		resp.Groups = append(resp.Groups, gr)
	}
	c.send(reply, resp)
	return c.flush()
}

// OffsetDelete handles an OffsetDeleteRequest. Offsets are gone from
// fetches at once; the response waits for the tombstones to persist.
func (c *Coordinator) OffsetDelete(now time.Time, reply ReplyID, req *kmsg.OffsetDeleteRequest) Ready {
	resp := kmsg.NewPtrOffsetDeleteResponse()
	resp.Version = req.Version
	g := c.groups[req.Group]
	switch {
	case g == nil:
		resp.ErrorCode = kerr.GroupIDNotFound.Code
	case g.state != Empty && g.protocolType != "consumer":
		resp.ErrorCode = kerr.NonEmptyGroup.Code
	}
	if resp.ErrorCode != 0 {
		c.send(reply, resp)
		return c.flush()
	}
	subscribed := g.subscribedTopics()
	wrote := false
	for _, t := range req.Topics {
		rt := kmsg.NewOffsetDeleteResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetDeleteResponseTopicPartition()
			rp.Partition = p.Partition
			tp := topicPartition{t.Topic, p.Partition}
			switch {
			case c.cfg.Topics != nil && !c.cfg.Topics.PartitionExists(t.Topic, p.Partition):
				rp.ErrorCode = kerr.UnknownTopicOrPartition.Code
			case subscribed[t.Topic]:
				rp.ErrorCode = kerr.GroupSubscribedToTopic.Code
			default:
				_, had := g.offsets[tp]
				if had || g.inflight[tp] > 0 {
					delete(g.offsets, tp)
					b := c.persistOffset(g.name, tp, nil)
					if g.inflight[tp] > 0 {
						g.lastWrite[tp] = b // supersedes the in-flight commit
					}
					wrote = true
				}
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	if !wrote {
		c.send(reply, resp)
		return c.flush()
	}
	c.afterPersist(func(_ time.Time, code int16) {
		if code != 0 {
			resp.ErrorCode = code
		}
		c.send(reply, resp)
	})
	return c.flush()
}

// subscribedTopics returns the topics a non-Empty consumer group's members
// subscribe to, from their consumer-protocol metadata.
func (g *group) subscribedTopics() map[string]bool {
	if g.state == Empty || g.protocolType != "consumer" {
		return nil
	}
	topics := make(map[string]bool)
	for _, m := range g.order {
		md := m.metadataFor(g.protocol)
		if g.protocol == "" && len(m.protocols) > 0 {
			md = m.protocols[0].metadata
		}
		var cm kmsg.ConsumerMemberMetadata
		if err := cm.ReadFrom(md); err != nil {
			continue
		}
		for _, t := range cm.Topics {
			topics[t] = true
		}
	}
	return topics
}
