package group

import (
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// sortedGroups returns the live groups by name.
func (c *Coordinator) sortedGroups() []*group {
	gs := make([]*group, 0, len(c.groups))
	for _, g := range c.groups {
		gs = append(gs, g)
	}
	slices.SortFunc(gs, func(a, b *group) int { return strings.Compare(a.name, b.name) })
	return gs
}

// ListGroups handles a ListGroupsRequest, with the state filter (v4+) and
// type filter (v5+: "classic" or "consumer", the KIP-848 groups).
func (c *Coordinator) ListGroups(now time.Time, reply ReplyID, req *kmsg.ListGroupsRequest) Ready {
	resp := kmsg.NewPtrListGroupsResponse()
	resp.Version = req.Version
	match := func(filter []string, v string) bool {
		if len(filter) == 0 {
			return true
		}
		for _, f := range filter {
			if strings.EqualFold(f, v) {
				return true
			}
		}
		return false
	}
	type entry struct{ name, protocolType, state, kind string }
	var entries []entry
	for _, g := range c.sortedGroups() {
		if c.cgroups[g.name] == nil { // else the consumer group's offsets: listed below
			entries = append(entries, entry{g.name, g.protocolType, g.state.String(), "classic"})
		}
	}
	for _, name := range sortedKeys(c.cgroups) {
		entries = append(entries, entry{name, "consumer", c.cgroups[name].state(), "consumer"})
	}
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.name, b.name) })
	for _, e := range entries {
		if req.Version >= 4 && !match(req.StatesFilter, e.state) {
			continue
		}
		if req.Version >= 5 && !match(req.TypesFilter, e.kind) {
			continue
		}
		lg := kmsg.NewListGroupsResponseGroup()
		lg.Group, lg.ProtocolType, lg.GroupState, lg.GroupType = e.name, e.protocolType, e.state, e.kind
		resp.Groups = append(resp.Groups, lg)
	}
	c.send(reply, resp)
	return c.flush()
}

// DescribeGroups handles a DescribeGroupsRequest. Member metadata and
// assignments are shown only when the group is Stable, as in Kafka.
func (c *Coordinator) DescribeGroups(now time.Time, reply ReplyID, req *kmsg.DescribeGroupsRequest) Ready {
	resp := kmsg.NewPtrDescribeGroupsResponse()
	resp.Version = req.Version
	for _, name := range req.Groups {
		dg := kmsg.NewDescribeGroupsResponseGroup()
		dg.Group = name
		dg.AuthorizedOperations = -2147483648
		g := c.groups[name]
		if g == nil {
			dg.State = Dead.String()
			if req.Version >= 6 {
				dg.ErrorCode = kerr.GroupIDNotFound.Code
				dg.ErrorMessage = strp("group " + name + " not found")
			}
			resp.Groups = append(resp.Groups, dg)
			continue
		}
		dg.State, dg.ProtocolType = g.state.String(), g.protocolType
		if g.state == Stable {
			dg.Protocol = g.protocol
		}
		for _, m := range g.order {
			dm := kmsg.NewDescribeGroupsResponseGroupMember()
			dm.MemberID, dm.InstanceID, dm.ClientID, dm.ClientHost = m.id, m.instanceID, m.clientID, m.clientHost
			dm.ProtocolMetadata, dm.MemberAssignment = []byte{}, []byte{}
			if g.state == Stable {
				dm.ProtocolMetadata = m.metadataFor(g.protocol)
				if m.assignment != nil {
					dm.MemberAssignment = m.assignment
				}
			}
			dg.Members = append(dg.Members, dm)
		}
		resp.Groups = append(resp.Groups, dg)
	}
	c.send(reply, resp)
	return c.flush()
}

// DeleteGroups handles a DeleteGroupsRequest: only Empty groups can go.
// The response waits for the tombstones to persist.
func (c *Coordinator) DeleteGroups(now time.Time, reply ReplyID, req *kmsg.DeleteGroupsRequest) Ready {
	resp := kmsg.NewPtrDeleteGroupsResponse()
	resp.Version = req.Version
	var deleted []int
	for _, name := range req.Groups {
		dg := kmsg.NewDeleteGroupsResponseGroup()
		dg.Group = name
		g, cg := c.groups[name], c.cgroups[name]
		switch {
		case cg != nil && len(cg.members) > 0:
			dg.ErrorCode = kerr.NonEmptyGroup.Code
		case cg != nil:
			c.deleteConsumerGroup(cg) // an empty consumer group, and its offsets below
			if g != nil {
				c.deleteGroup(g)
			}
			deleted = append(deleted, len(resp.Groups))
		case g == nil:
			dg.ErrorCode = kerr.GroupIDNotFound.Code
		case g.state != Empty:
			dg.ErrorCode = kerr.NonEmptyGroup.Code
		default:
			c.deleteGroup(g)
			deleted = append(deleted, len(resp.Groups))
		}
		resp.Groups = append(resp.Groups, dg)
	}
	if len(c.out.Records) == 0 {
		c.send(reply, resp)
		return c.flush()
	}
	c.afterPersist(func(_ time.Time, code int16) {
		for _, i := range deleted {
			resp.Groups[i].ErrorCode = code
		}
		c.send(reply, resp)
	})
	return c.flush()
}
