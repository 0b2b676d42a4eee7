package controller

import (
	"fmt"
	"slices"

	"github.com/ringtail/ringtail/meta"
)

// plan is the commands of one decision and the state they lead to: each command is applied to
// a copy of the committed state as it is added, so the next is built on its outcome (the
// partition epochs a ChangePartitions expects, the leaderships a FenceBroker waits for) and
// nothing is returned that the state would refuse.
type plan struct {
	st   *meta.State // a clone of the committed state, with cmds applied
	cmds []meta.Command
	errs []error // commands the state refused, left out
}

func newPlan(st *meta.State) *plan { return &plan{st: st.Clone()} }

// add applies cmd to the plan's state and keeps it, or leaves it out if the state refuses it.
func (p *plan) add(cmd meta.Command) {
	if _, err := meta.Apply(p.st, cmd); err != nil {
		p.errs = append(p.errs, fmt.Errorf("controller: left out %T: %w", cmd, err))
		return
	}
	p.cmds = append(p.cmds, cmd)
}

// changePartitions adds the ChangePartitions that take the brokers that may not hold a place
// (see mayLead) out of the ISRs and their leaderships away, and, with preferred, move
// leaderships back to preferred replicas. expired are brokers about to be fenced, which count
// as gone already.
func (p *plan) changePartitions(expired []meta.Broker, preferred bool) {
	gone := make(map[int32]bool, len(expired))
	for _, b := range expired {
		gone[b.ID] = true
	}
	// mayLead: registered, unfenced, not shutting down, not about to be fenced: a broker that
	// may lead and stay in (or join) an ISR.
	mayLead := func(id int32) bool {
		b, ok := p.st.Broker(id)
		return ok && b.Active() && !gone[id]
	}
	var changes []meta.PartitionChange
	for _, t := range p.st.Topics() {
		unclean := t.Effective("unclean.leader.election.enable") == "true"
		for i, a := range t.Assignments {
			leader, isr := target(a, mayLead, preferred, unclean)
			if leader == a.Leader && slices.Equal(isr, a.ISR) {
				continue
			}
			changes = append(changes, meta.PartitionChange{Topic: t.Name, TopicID: t.ID, Partition: int32(i),
				ExpectedPartitionEpoch: a.PartitionEpoch, Leader: leader, ISR: isr})
		}
	}
	for len(changes) > 0 {
		n := min(len(changes), meta.MaxPartitionChanges)
		p.add(meta.ChangePartitions{Changes: changes[:n]})
		changes = changes[n:]
	}
}

// target is the leader and ISR partition a should have.
//
// The ISR loses every member that may not lead, unless none may: then it stays as it is. Every
// member of an ISR holds every committed record (the high watermark is the minimum over it),
// so keeping them all leaves each a candidate for a clean election when it comes back, where
// cutting it to one would make the partition wait for that one.
//
// The leader stays if it is in the ISR and may lead; otherwise the first replica in replica
// order that is in the ISR and may lead takes over, or none does. With preferred, the first
// replica takes the leadership back if it is in the ISR and may lead.
//
// With unclean (the topic's unclean.leader.election.enable), a partition that no ISR member
// may lead is led by the first replica that may, alone in its ISR: it comes back online with
// what that replica holds, and what only the old ISR had is lost (the topic asked for that).
func target(a meta.PartitionAssignment, mayLead func(int32) bool, preferred, unclean bool) (int32, []int32) {
	isr := make([]int32, 0, len(a.ISR))
	for _, b := range a.ISR {
		if mayLead(b) {
			isr = append(isr, b)
		}
	}
	if len(isr) == 0 {
		isr = slices.Clone(a.ISR)
	}
	eligible := func(b int32) bool { return slices.Contains(isr, b) && mayLead(b) }
	leader := a.Leader
	if leader == meta.NoLeader || !eligible(leader) {
		leader = meta.NoLeader
		for _, r := range a.Replicas {
			if eligible(r) {
				leader = r
				break
			}
		}
	}
	if preferred && len(a.Replicas) > 0 && leader != a.Replicas[0] && eligible(a.Replicas[0]) {
		leader = a.Replicas[0]
	}
	if leader == meta.NoLeader && unclean {
		for _, r := range a.Replicas {
			if mayLead(r) {
				return r, []int32{r}
			}
		}
	}
	return leader, isr
}
