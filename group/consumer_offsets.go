package group

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Offsets of consumer-protocol groups. They are kept, written and expired like a simple
// consumer's (an offsets-only classic group of the same id, with no members), so the
// __consumer_offsets records are Kafka's OffsetCommit ones whatever the protocol; only who may
// commit and fetch differs: a member of the consumer group, at its member epoch.

// validateConsumerCommit is Kafka's check of an OffsetCommit to a consumer group. A commit
// without a member (an admin's) is accepted only while the group has no members. A member
// commits at its epoch, or at an older one for partitions it has held since that epoch
// (KIP-1251: a commit sent just before a heartbeat moved the member on is still its own);
// a newer epoch is FENCED_MEMBER_EPOCH, an older one STALE_MEMBER_EPOCH. Classic clients
// (before v9) get the classic codes.
func (c *Coordinator) validateConsumerCommit(g *consumerGroup, req *kmsg.OffsetCommitRequest) int16 {
	gen := req.Generation
	if req.Version < 1 {
		gen = -1
	}
	if gen < 0 && req.MemberID == "" {
		if len(g.members) == 0 {
			return 0
		}
		return kerr.UnknownMemberID.Code
	}
	m := g.members[req.MemberID]
	switch {
	case m == nil:
		return kerr.UnknownMemberID.Code
	case gen == m.epoch:
		return 0
	case req.Version < 9:
		return kerr.IllegalGeneration.Code
	case gen > m.epoch:
		return kerr.FencedMemberEpoch.Code
	}
	for _, t := range req.Topics {
		for _, p := range t.Partitions {
			since, held := m.since[topicPartition{t.Topic, p.Partition}]
			if !held || since > gen {
				return kerr.StaleMemberEpoch.Code
			}
		}
	}
	return 0
}

// validateConsumerFetch checks an OffsetFetch (v9+) of a consumer group that names a member:
// it must be at its current epoch.
func (c *Coordinator) validateConsumerFetch(group string, memberID *string, epoch int32) int16 {
	g := c.cgroups[group]
	if memberID == nil || g.members[*memberID] == nil {
		return kerr.UnknownMemberID.Code
	}
	if g.members[*memberID].epoch != epoch {
		return kerr.StaleMemberEpoch.Code
	}
	return 0
}
