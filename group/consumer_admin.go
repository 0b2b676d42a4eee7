package group

import (
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// state is a consumer group's state as Kafka names it (ConsumerGroupDescribe, ListGroups):
// Empty without members, Assigning while the target lags the group epoch, Reconciling while a
// member has not reached the target, Stable otherwise.
func (g *consumerGroup) state() string {
	if len(g.members) == 0 {
		return "Empty"
	}
	if g.targetEpoch != g.epoch {
		return "Assigning"
	}
	for _, m := range g.members {
		if m.epoch != g.targetEpoch || len(m.revoking) > 0 || m.unreleased > 0 {
			return "Reconciling"
		}
	}
	return "Stable"
}

// ConsumerGroupDescribe handles a ConsumerGroupDescribeRequest: every named group that is a
// consumer group, with its epochs, assignor and members (their current and target
// assignments); a classic or unknown group gets GROUP_ID_NOT_FOUND.
func (c *Coordinator) ConsumerGroupDescribe(now time.Time, reply ReplyID, req *kmsg.ConsumerGroupDescribeRequest) Ready {
	resp := req.ResponseKind().(*kmsg.ConsumerGroupDescribeResponse)
	for _, name := range req.Groups {
		dg := kmsg.NewConsumerGroupDescribeResponseGroup()
		dg.Group = name
		g := c.cgroups[name]
		if g == nil || c.cfg.ConsumerTopics == nil {
			dg.ErrorCode = kerr.GroupIDNotFound.Code
			dg.ErrorMessage = strp("Group " + name + " is not a consumer group.")
			resp.Groups = append(resp.Groups, dg)
			continue
		}
		dg.State, dg.Epoch, dg.AssignmentEpoch, dg.AssignorName = g.state(), g.epoch, g.targetEpoch, g.assignor(c.cfg.ConsumerAssignors)
		for _, id := range sortedKeys(g.members) {
			m := g.members[id]
			dm := kmsg.NewConsumerGroupDescribeResponseGroupMember()
			dm.MemberID, dm.InstanceID, dm.RackID, dm.MemberEpoch = m.id, m.instanceID, m.rack, m.epoch
			dm.ClientID, dm.ClientHost, dm.SubscribedTopics = m.clientID, m.clientHost, m.topics
			if dm.SubscribedTopics == nil {
				dm.SubscribedTopics = []string{}
			}
			if m.regex != nil {
				dm.SubscribedTopicRegex = strp(m.regex.String())
			}
			dm.Assignment = c.describeAssignment(m.assigned)
			dm.TargetAssignment = c.describeAssignment(g.target[id])
			dm.MemberType = 1 // a consumer-protocol member
			dg.Members = append(dg.Members, dm)
		}
		resp.Groups = append(resp.Groups, dg)
	}
	c.send(reply, resp)
	return c.flush()
}

func (c *Coordinator) describeAssignment(set map[topicPartition]bool) kmsg.Assignment {
	var a kmsg.Assignment
	byName := make(map[string][]int32)
	for tp := range set {
		byName[tp.topic] = append(byName[tp.topic], tp.partition)
	}
	byID := c.byTopicID(set, nil)
	for _, name := range sortedKeys(byName) {
		id, _, ok := c.cfg.ConsumerTopics.TopicByName(name)
		if !ok {
			continue
		}
		a.TopicPartitions = append(a.TopicPartitions, kmsg.AssignmentTopicPartition{TopicID: id, Topic: name, Partitions: byID[id]})
	}
	return a
}
