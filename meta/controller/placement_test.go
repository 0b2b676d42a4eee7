package controller_test

import (
	"encoding/binary"
	"fmt"
	"slices"
	"testing"

	"github.com/ringtail/ringtail/meta"
	"github.com/ringtail/ringtail/meta/controller"
)

// liveCluster returns a state with brokers 1..n registered and unfenced, broker i in
// racks[i % len(racks)] (no racks: nil).
func liveCluster(t *testing.T, n int, racks []string) *meta.State {
	t.Helper()
	st := meta.NewState()
	apply(t, st, meta.InitCluster{ClusterID: "c"})
	for i := 1; i <= n; i++ {
		rack := ""
		if len(racks) > 0 {
			rack = racks[i%len(racks)]
		}
		var inc [16]byte
		binary.BigEndian.PutUint64(inc[8:], uint64(i))
		res := apply(t, st, meta.RegisterBroker{ID: int32(i), Incarnation: inc, Listener: fmt.Sprintf("b%d:9092", i), Rack: rack})
		apply(t, st, meta.UnfenceBroker{ID: int32(i), Epoch: res.BrokerEpoch})
	}
	return st
}

func apply(t *testing.T, st *meta.State, cmd meta.Command) meta.Result {
	t.Helper()
	res, err := meta.Apply(st, cmd)
	if err != nil {
		t.Fatalf("%#v: %v", cmd, err)
	}
	return res
}

// counts returns, per broker, the replicas and first replicas in lists.
func counts(lists [][]int32) (replicas, leaders map[int32]int) {
	replicas, leaders = map[int32]int{}, map[int32]int{}
	for _, r := range lists {
		for _, b := range r {
			replicas[b]++
		}
		leaders[r[0]]++
	}
	return replicas, leaders
}

// TestPlacementEven: for a partition count that is a multiple of the broker count, every
// broker gets exactly as many replicas and preferred leaderships as every other, without and
// with (equal) racks, and a partition's replicas are distinct brokers on distinct racks while
// there are racks enough.
func TestPlacementEven(t *testing.T) {
	for _, racks := range [][]string{nil, {"a", "b"}, {"a", "b", "c"}} {
		for n := 1; n <= 9; n++ {
			if len(racks) > 0 && n%len(racks) != 0 {
				continue
			}
			st := liveCluster(t, n, racks)
			for rf := 1; rf <= n; rf++ {
				for _, p := range []int{n, 2 * n, 5 * n} {
					name := fmt.Sprintf("racks=%v n=%d rf=%d p=%d", racks, n, rf, p)
					lists, err := controller.Placement(st, p, rf, nil)
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					replicas, leaders := counts(lists)
					for b := int32(1); b <= int32(n); b++ {
						if replicas[b] != p*rf/n || leaders[b] != p/n {
							t.Fatalf("%s: broker %d has %d replicas and %d leaderships, want %d and %d:\n%v", name, b, replicas[b], leaders[b], p*rf/n, p/n, lists)
						}
					}
					for _, r := range lists {
						seenRacks := map[string]bool{}
						for i, b := range r {
							if slices.Contains(r[:i], b) {
								t.Fatalf("%s: %v repeats a broker", name, r)
							}
							if len(racks) > 0 {
								rack := racks[int(b)%len(racks)]
								if seenRacks[rack] && len(seenRacks) < len(racks) {
									t.Fatalf("%s: %v repeats rack %s before using every rack", name, r, rack)
								}
								seenRacks[rack] = true
							}
						}
					}
					again, _ := controller.Placement(st, p, rf, nil)
					if !slices.EqualFunc(again, lists, slices.Equal) {
						t.Fatalf("%s: two placements of one state differ", name)
					}
				}
			}
		}
	}
}

// TestPlacementAcrossTopics: topics created one after another start where the preferred
// leaderships are fewest and shift their later replicas to where replicas are fewest, so
// one-partition topics spread their leaders and replicas evenly too.
func TestPlacementAcrossTopics(t *testing.T) {
	st := liveCluster(t, 5, nil)
	for i := 1; i <= 23; i++ {
		lists, err := controller.Placement(st, 1, 3, nil)
		if err != nil {
			t.Fatal(err)
		}
		var id [16]byte
		binary.BigEndian.PutUint64(id[8:], uint64(i))
		apply(t, st, meta.CreateTopic{Name: fmt.Sprintf("t%d", i), ID: id, Partitions: controller.NewPartitions(lists)})
	}
	var all [][]int32
	for _, top := range st.Topics() {
		all = append(all, top.Assignments[0].Replicas)
	}
	replicas, leaders := counts(all)
	spread := func(m map[int32]int) int {
		lo, hi := m[1], m[1]
		for b := int32(2); b <= 5; b++ {
			lo, hi = min(lo, m[b]), max(hi, m[b])
		}
		return hi - lo
	}
	if spread(leaders) > 1 || spread(replicas) > 1 {
		t.Fatalf("leaderships %v, replicas %v: uneven", leaders, replicas)
	}
}
