package group

import (
	"bytes"
	"regexp"
	"slices"
	"time"
)

// Persistence of consumer-protocol groups: what changed is written in Kafka's records
// (records_consumer.go), and Replay rebuilds the groups from them.

// persistConsumer writes what changed in g since it was last written: the group epoch, and for
// each member touched, its metadata, target and current assignment; then the target's epoch.
func (c *Coordinator) persistConsumer(g *consumerGroup) {
	if g.savedEpoch != g.epoch {
		c.persist(Record{consumerKey(keyConsumerMetadata, g.name, ""), consumerMetadataValue(g.epoch)})
		g.savedEpoch = g.epoch
	}
	for _, id := range sortedKeys(g.touched) {
		m := g.members[id]
		if m == nil {
			continue // removed: persistMemberGone wrote its tombstones
		}
		if v := consumerMemberValue(m); !bytes.Equal(v, m.savedMeta) {
			c.persist(Record{consumerKey(keyConsumerMember, g.name, id), v})
			m.savedMeta = v
		}
		if v := consumerTargetMemberValue(c.byTopicID(g.target[id], nil)); !bytes.Equal(v, m.savedTarget) {
			c.persist(Record{consumerKey(keyConsumerTargetMember, g.name, id), v})
			m.savedTarget = v
		}
		if v := c.currentValue(m); !bytes.Equal(v, m.savedCurrent) {
			c.persist(Record{consumerKey(keyConsumerCurrent, g.name, id), v})
			m.savedCurrent = v
		}
	}
	clear(g.touched)
	if g.savedTargetEpoch != g.targetEpoch {
		c.persist(Record{consumerKey(keyConsumerTargetMetadata, g.name, ""), consumerTargetMetadataValue(g.targetEpoch)})
		g.savedTargetEpoch = g.targetEpoch
	}
}

// currentValue is m's ConsumerGroupCurrentMemberAssignment value.
func (c *Coordinator) currentValue(m *consumerMember) []byte {
	state := memberStateStable
	switch {
	case len(m.revoking) > 0:
		state = memberStateUnrevoked
	case m.unreleased > 0:
		state = memberStateUnreleased
	}
	epoch, prev := m.epoch, m.prevEpoch
	if m.staticLeft {
		// As Kafka: epoch -2 marks a static member away; its epoch is kept in the previous.
		epoch, prev = -2, m.epoch
	}
	since := make(map[[16]byte][]int32)
	return consumerCurrentValue(epoch, prev, state, c.byTopicID(m.assigned, m.since, since), since, c.byTopicID(m.revoking, nil))
}

// deleteConsumerGroup forgets an empty consumer group and writes the tombstones of its
// group-level records.
func (c *Coordinator) deleteConsumerGroup(g *consumerGroup) {
	for _, v := range []int16{keyConsumerTargetMetadata, keyConsumerMetadata} {
		c.persist(Record{consumerKey(v, g.name, ""), nil})
	}
	delete(c.cgroups, g.name)
}

// persistMemberGone writes the tombstones of a member's records.
func (c *Coordinator) persistMemberGone(g *consumerGroup, id string) {
	for _, v := range []int16{keyConsumerCurrent, keyConsumerTargetMember, keyConsumerMember} {
		c.persist(Record{consumerKey(v, g.name, id), nil})
	}
	delete(g.touched, id)
}

// byTopicID groups partitions by topic id, sorted; with sinceIn, sinceOut gets the aligned
// epochs. Partitions of topics that no longer exist are left out.
func (c *Coordinator) byTopicID(set map[topicPartition]bool, sinceIn map[topicPartition]int32, sinceOut ...map[[16]byte][]int32) map[[16]byte][]int32 {
	byName := make(map[string][]int32)
	for tp := range set {
		byName[tp.topic] = append(byName[tp.topic], tp.partition)
	}
	out := make(map[[16]byte][]int32, len(byName))
	for name, ps := range byName {
		id, _, ok := c.cfg.ConsumerTopics.TopicByName(name)
		if !ok {
			continue
		}
		slices.Sort(ps)
		out[id] = ps
		if sinceIn != nil && len(sinceOut) > 0 {
			e := make([]int32, len(ps))
			for i, p := range ps {
				e[i] = sinceIn[topicPartition{name, p}]
			}
			sinceOut[0][id] = e
		}
	}
	return out
}

// consumerImage is a consumer group as its records say, gathered during Replay.
type consumerImage struct {
	epoch, targetEpoch int32
	members            map[string]*consumerRecord // v5
	targets            map[string]*consumerRecord // v7
	current            map[string]*consumerRecord // v8
}

func newConsumerImage() *consumerImage {
	return &consumerImage{members: map[string]*consumerRecord{}, targets: map[string]*consumerRecord{}, current: map[string]*consumerRecord{}}
}

func (im *consumerImage) apply(r *consumerRecord, tombstone bool) {
	set := func(m map[string]*consumerRecord) {
		if tombstone {
			delete(m, r.member)
		} else {
			m[r.member] = r
		}
	}
	switch r.kind {
	case keyConsumerMetadata:
		im.epoch = r.epoch // 0 for a tombstone: the group was deleted
	case keyConsumerTargetMetadata:
		im.targetEpoch = r.epoch
	case keyConsumerMember:
		set(im.members)
	case keyConsumerTargetMember:
		set(im.targets)
	case keyConsumerCurrent:
		set(im.current)
	}
}

// replayConsumers rebuilds the consumer groups: members with fresh sessions from now, their
// epochs, targets and partitions as last written. A partition claimed as assigned by one member
// and as pending revocation by another belongs to the first (the other's acknowledgement was
// lost with a failed write; it acknowledges again).
func (c *Coordinator) replayConsumers(now time.Time, images map[string]*consumerImage) {
	if c.cfg.ConsumerTopics == nil {
		return
	}
	names := make(map[[16]byte]string)
	for _, name := range c.cfg.ConsumerTopics.TopicNames() {
		if id, _, ok := c.cfg.ConsumerTopics.TopicByName(name); ok {
			names[id] = name
		}
	}
	toSet := func(parts map[[16]byte][]int32) map[topicPartition]bool {
		out := make(map[topicPartition]bool)
		for id, ps := range parts {
			if name, ok := names[id]; ok {
				for _, p := range ps {
					out[topicPartition{name, p}] = true
				}
			}
		}
		return out
	}
	for _, gname := range sortedKeys(images) {
		im := images[gname]
		if len(im.members) == 0 && im.epoch == 0 {
			continue
		}
		g := newConsumerGroup(gname)
		g.epoch, g.targetEpoch = im.epoch, im.targetEpoch
		g.savedEpoch, g.savedTargetEpoch = im.epoch, im.targetEpoch
		for _, id := range sortedKeys(im.members) {
			r := im.members[id]
			m := &consumerMember{
				id: id, instanceID: r.instanceID, rack: r.rack, clientID: r.clientID, clientHost: r.clientHost,
				topics: r.topics, rebalance: time.Duration(r.rebalanceMs) * time.Millisecond,
				assigned: map[topicPartition]bool{}, revoking: map[topicPartition]bool{}, since: map[topicPartition]int32{},
			}
			if r.regex != nil {
				m.regex, _ = regexp.Compile(*r.regex) // it compiled when it was written
			}
			if r.assignor != nil {
				m.assignor = *r.assignor
			}
			m.session = &timer{idx: -1, kind: timerConsumerSession, cg: g, cm: m}
			m.revokeBy = &timer{idx: -1, kind: timerConsumerRevoke, cg: g, cm: m}
			if cur := im.current[id]; cur != nil {
				m.epoch, m.prevEpoch = cur.epoch, cur.prev
				if cur.epoch == -2 {
					m.staticLeft, m.epoch = true, cur.prev
				}
				m.assigned, m.revoking = toSet(cur.assigned), toSet(cur.revoking)
				for topicID, ps := range cur.assigned {
					if e := cur.since[topicID]; len(e) == len(ps) {
						for i, p := range ps {
							m.since[topicPartition{names[topicID], p}] = e[i]
						}
					}
				}
			}
			if t := im.targets[id]; t != nil {
				g.target[id] = toSet(t.assigned)
			} else {
				g.target[id] = map[topicPartition]bool{}
			}
			g.members[id] = m
			if m.instanceID != nil {
				g.instances[*m.instanceID] = id
			}
			for tp := range g.target[id] {
				if !m.assigned[tp] {
					m.unreleased++ // held by another, or free: the next heartbeat looks
				}
			}
			m.savedMeta = consumerMemberValue(m)
			m.savedTarget = consumerTargetMemberValue(c.byTopicID(g.target[id], nil))
			m.savedCurrent = c.currentValue(m)
			c.arm(m.session, now.Add(c.cfg.ConsumerSessionTimeout))
			if len(m.revoking) > 0 {
				c.arm(m.revokeBy, now.Add(m.rebalance))
			}
		}
		for _, id := range sortedKeys(g.members) {
			for tp := range g.members[id].revoking {
				g.owner[tp] = id
			}
		}
		for _, id := range sortedKeys(g.members) {
			for tp := range g.members[id].assigned {
				g.owner[tp] = id
			}
		}
		// The subscribed partitions as they are now: a change while the coordinator was away
		// moves the group epoch at the next heartbeat.
		g.partitions = c.subscribedPartitions(g, nil)
		c.cgroups[gname] = g
	}
}
