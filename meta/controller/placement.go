package controller

import (
	"fmt"
	"slices"

	"github.com/ringtail/ringtail/meta"
)

// Placement chooses the replicas of partitions new partitions of replicationFactor replicas
// each, on the brokers that may take them (registered, unfenced, not shutting down). existing
// is the replica lists of the topic's partitions so far (nil for a new topic): the new ones
// continue their pattern.
//
// It is Kafka's assignment (AdminUtils.assignReplicasToBrokers), made deterministic: brokers
// in a rack-alternating order (one of each rack in turn, racks sorted, a broker without a rack
// a rack of its own, brokers by id within a rack); partition p's first replica, its preferred
// leader, at position (p + start) of that order, so leaders go round-robin; the others at a
// shift from the first that grows by one every len(brokers) partitions, skipping a broker whose
// rack already has a replica while some rack has none. So replicas and leaders spread evenly
// (exactly, for a multiple of the broker count) and a partition's replicas are on distinct
// racks where there are enough racks.
//
// Kafka draws the start at random; here it is the broker with the fewest preferred
// leaderships over every topic (the first in the order on a tie), so topics created one after
// another spread their leaders too, and the same state gives the same placement. For new
// partitions of a topic, the start is its partition 0's first replica, as in Kafka.
//
// A replication factor above the number of brokers that may take a replica is
// meta.ErrInvalidRF (INVALID_REPLICATION_FACTOR).
func Placement(st *meta.State, partitions, replicationFactor int, existing [][]int32) ([][]int32, error) {
	if partitions < 1 || len(existing)+partitions > meta.MaxPartitions {
		return nil, fmt.Errorf("%w: %d new partitions after %d (at most %d in all)", meta.ErrInvalidPartitions, partitions, len(existing), meta.MaxPartitions)
	}
	if replicationFactor < 1 || replicationFactor > meta.MaxReplicas {
		return nil, fmt.Errorf("%w: %d (must be 1..%d)", meta.ErrInvalidRF, replicationFactor, meta.MaxReplicas)
	}
	if len(existing) > 0 && len(existing[0]) != replicationFactor {
		return nil, fmt.Errorf("%w: %d, the topic's partitions have %d replicas", meta.ErrInvalidRF, replicationFactor, len(existing[0]))
	}
	var live []meta.Broker
	for _, b := range st.Brokers() {
		if b.Active() {
			live = append(live, b)
		}
	}
	if replicationFactor > len(live) {
		return nil, fmt.Errorf("%w: %d is more than the %d live brokers", meta.ErrInvalidRF, replicationFactor, len(live))
	}
	order, rackOf, racks := rackAlternated(live)
	n := len(order)
	start := startIndex(st, order, existing)

	out := make([][]int32, partitions)
	for i := range out {
		p := len(existing) + i
		shift := start + p/n // Kafka's shift, one more every n partitions
		first := (p + start) % n
		replicas := make([]int32, 1, replicationFactor)
		replicas[0] = order[first]
		usedRacks := map[string]bool{rackOf[order[first]]: true}
		for k := 0; len(replicas) < replicationFactor; k++ {
			b := order[replicaIndex(first, shift*racks, k, n)]
			// Kafka's rule: a broker already holding a replica never again (there are enough
			// brokers), one of a rack holding one only once every rack holds one. The
			// candidates cycle through every other broker in n-1 steps, and one of them
			// passes, so k stays below n-1 per replica.
			if slices.Contains(replicas, b) || usedRacks[rackOf[b]] && len(usedRacks) < racks {
				continue
			}
			replicas = append(replicas, b)
			usedRacks[rackOf[b]] = true
		}
		out[i] = replicas
	}
	return out, nil
}

// NewPartitions turns replica lists (from Placement) into the partitions of a CreateTopic or
// CreatePartitions: every replica in sync, the first one leading.
func NewPartitions(replicas [][]int32) []meta.NewPartition {
	ps := make([]meta.NewPartition, len(replicas))
	for i, r := range replicas {
		ps[i] = meta.NewPartition{Replicas: r, ISR: r, Leader: r[0]}
	}
	return ps
}

// replicaIndex is Kafka's: the position of a later replica, at a shift of 1..n-1 from the
// first, so never the first itself.
func replicaIndex(first, shift, k, n int) int {
	return (first + 1 + (shift+k)%(n-1)) % n
}

// rackAlternated returns the brokers in Kafka's rack-alternating order, each broker's rack
// (a broker without one gets a rack of its own) and the number of racks.
func rackAlternated(brokers []meta.Broker) (order []int32, rackOf map[int32]string, racks int) {
	rackOf = make(map[int32]string, len(brokers))
	byRack := map[string][]int32{}
	for _, b := range brokers { // sorted by id, and so is each rack's list
		rack := b.Rack
		if rack == "" {
			// Sorts before every named rack and, as the width is fixed, by id among brokers
			// without one: with no racks at all the order is the brokers' ids.
			rack = fmt.Sprintf("\x00%011d", b.ID)
		}
		rackOf[b.ID] = rack
		byRack[rack] = append(byRack[rack], b.ID)
	}
	names := make([]string, 0, len(byRack))
	for r := range byRack {
		names = append(names, r)
	}
	slices.Sort(names)
	for i := 0; len(order) < len(brokers); i = (i + 1) % len(names) {
		if ids := byRack[names[i]]; len(ids) > 0 {
			order = append(order, ids[0])
			byRack[names[i]] = ids[1:]
		}
	}
	return order, rackOf, len(names)
}

// startIndex is the position in order of the first replica of partition 0: the existing
// partition 0's first replica when it can still take one, else the broker that is the first
// replica (preferred leader) of the fewest partitions.
func startIndex(st *meta.State, order []int32, existing [][]int32) int {
	if len(existing) > 0 && len(existing[0]) > 0 {
		if i := slices.Index(order, existing[0][0]); i >= 0 {
			return i
		}
	}
	leads := make(map[int32]int, len(order))
	for _, t := range st.Topics() {
		for _, a := range t.Assignments {
			if len(a.Replicas) > 0 {
				leads[a.Replicas[0]]++
			}
		}
	}
	best := 0
	for i, b := range order {
		if leads[b] < leads[order[best]] {
			best = i
		}
	}
	return best
}
