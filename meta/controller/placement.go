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
// Kafka draws the start and the shift at random; here the start is the broker with the fewest
// preferred leaderships over every topic (then the fewest replicas, then the first in the
// order) and the shift the one that leaves the replicas most even, so topics created one
// after another spread their leaders and replicas too, and the same state gives the same
// placement. For new partitions of a topic, the start and shift are its partition 0's first
// replica, as in Kafka.
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
	pl := placer{order: order, rackOf: rackOf, racks: racks, rf: replicationFactor, first: len(existing)}
	if len(existing) > 0 && len(existing[0]) > 0 {
		// More partitions of a topic: its pattern goes on, from its partition 0's first
		// replica (Kafka's rule), as long as that broker can still take one.
		if i := slices.Index(order, existing[0][0]); i >= 0 {
			return pl.place(partitions, i, i), nil
		}
	}
	replicas, leaders := load(st)
	start := 0
	for i, b := range order {
		if leaders[b] < leaders[order[start]] || leaders[b] == leaders[order[start]] && replicas[b] < replicas[order[start]] {
			start = i
		}
	}
	// Kafka draws the shift of the later replicas at random; here it is the one that leaves
	// the replicas most even over the brokers (least sum of squares), the smallest on a tie.
	var best [][]int32
	bestSpread := -1
	for shift := range max(len(order)-1, 1) {
		lists := pl.place(partitions, start, shift)
		spread := 0
		added := make(map[int32]int, len(order))
		for _, r := range lists {
			for _, b := range r {
				added[b]++
			}
		}
		for _, b := range order {
			spread += (replicas[b] + added[b]) * (replicas[b] + added[b])
		}
		if bestSpread < 0 || spread < bestSpread {
			best, bestSpread = lists, spread
		}
	}
	return best, nil
}

// placer places the partitions of one Placement.
type placer struct {
	order  []int32          // the brokers, rack-alternated
	rackOf map[int32]string // each broker's rack (its own when it has none)
	racks  int
	rf     int
	first  int // the number of the first partition placed
}

// place places partitions partitions with Kafka's algorithm: partition p's first replica at
// position (p + start) of the order, the others at a shift from it of shift + p/len(order)
// (one more every len(order) partitions) and on, skipping brokers as Kafka does.
func (pl placer) place(partitions, start, shift int) [][]int32 {
	n := len(pl.order)
	out := make([][]int32, partitions)
	for i := range out {
		p := pl.first + i
		first := (p + start) % n
		pshift := shift + p/n
		replicas := make([]int32, 1, pl.rf)
		replicas[0] = pl.order[first]
		usedRacks := map[string]bool{pl.rackOf[pl.order[first]]: true}
		for k := 0; len(replicas) < pl.rf; k++ {
			b := pl.order[replicaIndex(first, pshift*pl.racks, k, n)]
			// Kafka's rule: a broker already holding a replica never again (there are enough
			// brokers), one of a rack holding one only once every rack holds one. The
			// candidates cycle through every other broker in n-1 steps, and one of them
			// passes, so k stays below n-1 per replica.
			if slices.Contains(replicas, b) || usedRacks[pl.rackOf[b]] && len(usedRacks) < pl.racks {
				continue
			}
			replicas = append(replicas, b)
			usedRacks[pl.rackOf[b]] = true
		}
		out[i] = replicas
	}
	return out
}

// load counts, per broker, the replicas and the preferred leaderships (first replicas) of
// every partition in st.
func load(st *meta.State) (replicas, leaders map[int32]int) {
	replicas, leaders = map[int32]int{}, map[int32]int{}
	for _, t := range st.Topics() {
		for _, a := range t.Assignments {
			for _, b := range a.Replicas {
				replicas[b]++
			}
			if len(a.Replicas) > 0 {
				leaders[a.Replicas[0]]++
			}
		}
	}
	return replicas, leaders
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
