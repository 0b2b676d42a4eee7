package group

import (
	"slices"
	"strings"
)

// Server-side assignors of the consumer protocol (KIP-848): the coordinator computes every
// member's target assignment itself. Both are pure functions of the members' subscriptions,
// the partition counts and the previous target (for stickiness), so the same group state gives
// the same assignment.

// Assignor names a client may ask for in ConsumerGroupHeartbeat.ServerAssignor.
const (
	AssignorUniform = "uniform"
	AssignorRange   = "range"
)

// assignInput is what an assignor sees: each member's subscribed topics (resolved, sorted),
// the partition count of every subscribed topic, and the previous target for stickiness.
type assignInput struct {
	members    []string            // member ids, sorted
	subscribed map[string][]string // member id → topics
	partitions map[string]int32    // topic → partitions
	previous   map[string]map[topicPartition]bool
}

func assign(name string, in assignInput) map[string]map[topicPartition]bool {
	if name == AssignorRange {
		return assignRange(in)
	}
	return assignUniform(in)
}

// assignRange is Kafka's range assignor per topic: the members subscribed to a topic, sorted,
// get contiguous ranges of its partitions, the first (partitions % members) one more.
func assignRange(in assignInput) map[string]map[topicPartition]bool {
	out := emptyTargets(in.members)
	for _, topic := range sortedTopics(in.partitions) {
		var subs []string
		for _, m := range in.members {
			if slices.Contains(in.subscribed[m], topic) {
				subs = append(subs, m)
			}
		}
		if len(subs) == 0 {
			continue
		}
		n := in.partitions[topic]
		per, extra := n/int32(len(subs)), n%int32(len(subs))
		p := int32(0)
		for i, m := range subs {
			k := per
			if int32(i) < extra {
				k++
			}
			for ; k > 0; k-- {
				out[m][topicPartition{topic, p}] = true
				p++
			}
		}
	}
	return out
}

// assignUniform spreads every subscribed partition over the members subscribed to its topic so
// that counts differ as little as the subscriptions allow, keeping a partition with its
// previous owner while that owner is below its share (sticky, like Kafka's uniform assignor,
// though with a simpler balance rule: shares are total partitions over members, rounded up).
func assignUniform(in assignInput) map[string]map[topicPartition]bool {
	out := emptyTargets(in.members)
	if len(in.members) == 0 {
		return out
	}
	var all []topicPartition
	for _, topic := range sortedTopics(in.partitions) {
		for p := int32(0); p < in.partitions[topic]; p++ {
			all = append(all, topicPartition{topic, p})
		}
	}
	subscribedTo := func(m, topic string) bool { return slices.Contains(in.subscribed[m], topic) }
	share := (len(all) + len(in.members) - 1) / len(in.members)
	var free []topicPartition
	for _, tp := range all {
		kept := false
		for _, m := range in.members {
			if in.previous[m][tp] && subscribedTo(m, tp.topic) && len(out[m]) < share {
				out[m][tp] = true
				kept = true
				break
			}
		}
		if !kept {
			free = append(free, tp)
		}
	}
	for _, tp := range free {
		best := ""
		for _, m := range in.members {
			if subscribedTo(m, tp.topic) && (best == "" || len(out[m]) < len(out[best])) {
				best = m
			}
		}
		if best != "" {
			out[best][tp] = true
		}
	}
	return out
}

func emptyTargets(members []string) map[string]map[topicPartition]bool {
	out := make(map[string]map[topicPartition]bool, len(members))
	for _, m := range members {
		out[m] = make(map[topicPartition]bool)
	}
	return out
}

func sortedTopics(partitions map[string]int32) []string {
	out := make([]string, 0, len(partitions))
	for t := range partitions {
		out = append(out, t)
	}
	slices.SortFunc(out, strings.Compare)
	return out
}
