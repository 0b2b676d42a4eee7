package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/ringtail/ringtail/group"
)

// TestOffsetsTopicCompaction commits offsets many times over for a few groups with a low
// compaction threshold: each partition of __consumer_offsets holding one of them gets its live
// state rewritten and its old segments deleted (the log start offset moves), and before and after a restart every group returns the
// offsets it committed last, while a group deleted before the compaction stays deleted.
func TestOffsetsTopicCompaction(t *testing.T) {
	b := startBroker(t, withArgs("--offsets-compact-records", "300", "--segment-bytes", fmt.Sprint(1<<20),
		"--retention-check-interval", "200ms"))
	adm := b.Admin(t)
	const topic, groups, partitions = "compacted-commits", 3, 4
	createTopic(t, adm, topic, partitions, nil)

	commit := func(group string, at int64) {
		t.Helper()
		offs := make(kadm.Offsets)
		for p := int32(0); p < partitions; p++ {
			// Metadata padding makes the log roll segments, so whole ones can be deleted.
			offs.Add(kadm.Offset{Topic: topic, Partition: p, At: at + int64(p), LeaderEpoch: -1,
				Metadata: strings.Repeat("m", 1000)})
		}
		res, err := adm.CommitOffsets(ctxTimeout(t, opTimeout), group, offs)
		if err != nil || res.Error() != nil {
			t.Fatalf("commit %s at %d: %v / %v", group, at, err, res.Error())
		}
	}
	commit("doomed", 7)
	if res, err := adm.DeleteGroups(ctxTimeout(t, opTimeout), "doomed"); err != nil || res.Error() != nil {
		t.Fatalf("delete group: %v / %v", err, res.Error())
	}
	const rounds = 400 // 400 × 3 commits × 4 partitions ≈ 4,800 records, 4.8 MB: many compactions
	for i := int64(1); i <= rounds; i++ {
		for g := range groups {
			commit(fmt.Sprintf("g%d", g), i*100)
		}
	}

	check := func(when string, a *kadm.Client) {
		t.Helper()
		for g := range groups {
			group := fmt.Sprintf("g%d", g)
			fetched, err := a.FetchOffsets(ctxTimeout(t, opTimeout), group)
			if err != nil {
				t.Fatalf("%s: FetchOffsets(%s): %v", when, group, err)
			}
			for p := int32(0); p < partitions; p++ {
				o, ok := fetched.Lookup(topic, p)
				if want := int64(rounds*100) + int64(p); !ok || o.Err != nil || o.At != want {
					t.Fatalf("%s: %s partition %d: %+v, want offset %d", when, group, p, o, want)
				}
			}
		}
		lg, err := a.ListGroups(ctxTimeout(t, opTimeout))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := lg["doomed"]; ok {
			t.Fatalf("%s: the deleted group is back", when)
		}
		fetched, err := a.FetchOffsets(ctxTimeout(t, opTimeout), "doomed")
		if err != nil {
			t.Fatal(err)
		}
		if o, ok := fetched.Lookup(topic, 0); ok && o.At >= 0 {
			t.Fatalf("%s: the deleted group's offset is back: %+v", when, o)
		}
	}

	// Each group lives in its own partition of __consumer_offsets (group.PartitionFor), and each
	// partition is compacted by its own coordinator: every partition holding one of the groups
	// must see its log start move.
	starts := make(map[int32]int64)
	deadline := time.Now().Add(30 * time.Second)
	for {
		so, err := adm.ListStartOffsets(ctxTimeout(t, opTimeout), "__consumer_offsets")
		if err != nil {
			t.Fatal(err)
		}
		n := int32(len(so["__consumer_offsets"]))
		moved := true
		for g := range groups {
			p := group.PartitionFor(fmt.Sprintf("g%d", g), n)
			o, ok := so.Lookup("__consumer_offsets", p)
			if !ok || o.Err != nil || o.Offset == 0 {
				moved = false
				continue
			}
			starts[p] = o.Offset
		}
		if moved {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("__consumer_offsets partitions not all compacted (log starts %v of %d partitions); broker log:\n%s",
				starts, n, tail(b.Log(), 3000))
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.waitLog(t, "__consumer_offsets compacted", "compaction")
	check("after compaction", adm)

	b.Stop()
	b.Restart()
	check("after a restart", b.Admin(t))
	t.Logf("__consumer_offsets log starts after compaction, by partition: %v", starts)
}
