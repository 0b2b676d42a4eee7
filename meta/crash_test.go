package meta

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/ringtail/ringtail/vfs"
	"github.com/ringtail/ringtail/vfs/crashfs"
)

// crashWorkload is a start (an empty directory, or one holding a meta.json) and the commands
// proposed to a LocalLog opened on it, with a snapshot every 3 commands so compaction and
// replay across a snapshot are part of every run.
type crashWorkload struct {
	legacy   []byte // meta.json written before the run; nil: an empty directory
	commands []Command
}

func (w crashWorkload) config(dir string, fsys vfs.FS) LocalLogConfig {
	return LocalLogConfig{Dir: dir, FS: fsys, NodeID: 1, SnapshotEvery: 3}
}

// states returns the state after each prefix of the commands: states[j] after the first j.
func (w crashWorkload) states(t *testing.T) [][]byte {
	st := NewState()
	if w.legacy != nil {
		var err error
		if st, err = importLegacy(w.legacy, 1); err != nil {
			t.Fatal(err)
		}
	}
	out := [][]byte{st.Snapshot()}
	for i, cmd := range w.commands {
		if _, err := Apply(st, cmd); err != nil {
			t.Fatalf("workload command %d (%T) does not apply: %v", i, cmd, err)
		}
		out = append(out, st.Snapshot())
	}
	return out
}

// crashRun is what a run saw: how many Proposes it made and how many returned nil.
type crashRun struct{ proposed, acked int }

func (w crashWorkload) run(t *testing.T, dir string, cfs *crashfs.FS) (r crashRun) {
	l, err := OpenLocalLog(w.config(dir, cfs))
	if err != nil {
		if cfs.Ops() < cfs.CrashPoint() || cfs.CrashPoint() == 0 {
			t.Errorf("open before the cut: %v", err) // not Fatalf: this may run on a watchdog goroutine
		}
		return r
	}
	defer l.Close() // after a cut its errors are the crash's
	for _, cmd := range w.commands {
		r.proposed++
		if _, err := l.Propose(context.Background(), cmd); err != nil {
			if cfs.CrashPoint() == 0 || cfs.Ops() < cfs.CrashPoint() {
				t.Errorf("%T before the cut: %v", cmd, err)
			}
			return r
		}
		r.acked++
	}
	return r
}

// check recovers dir and verifies that its state is the state after every acknowledged
// command and at most the one in flight at the cut, whole: never a command applied in part
// or twice. Then the log must take a command that a second recovery keeps (a torn tail left
// in place would hide every record appended after it).
func (w crashWorkload) check(t *testing.T, dir string, r crashRun, states [][]byte) {
	l, err := OpenLocalLog(w.config(dir, vfs.OSFS{}))
	if err != nil {
		t.Fatalf("recovery: %v", err)
	}
	got := l.State().Snapshot()
	match := -1
	for j := r.acked; j <= r.proposed; j++ {
		if bytes.Equal(got, states[j]) {
			match = j
		}
	}
	if match < 0 {
		t.Fatalf("recovered state is not the state after %d..%d commands:\n%s", r.acked, r.proposed, formatState(l.State()))
	}
	if _, err := os.Stat(filepath.Join(dir, legacyFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("meta.json still there after recovery: %v", err)
	}
	if l.State().ClusterID() == "" { // cut before InitCluster was durable
		if _, err := l.Propose(context.Background(), InitCluster{ClusterID: "c1"}); err != nil {
			t.Fatalf("InitCluster after recovery: %v", err)
		}
	}
	next := l.State().NextProducerID()
	res, err := l.Propose(context.Background(), AllocateProducerIDs{Count: 1})
	if err != nil || res.ProducerID != next {
		t.Fatalf("allocation after recovery: %+v, %v (next id was %d)", res, err, next)
	}
	want := l.State().Snapshot()
	l.Close()
	l, err = OpenLocalLog(w.config(dir, vfs.OSFS{}))
	if err != nil {
		t.Fatalf("second recovery: %v", err)
	}
	defer l.Close()
	if !bytes.Equal(l.State().Snapshot(), want) {
		t.Fatalf("the command after recovery is lost on the next open:\n%s", formatState(l.State()))
	}
}

// TestCrashAtEveryOperation cuts the power at every storage operation of a metadata workload
// in turn (every write, sync, truncation, rename, removal and file creation of the command
// file, the snapshot and the meta.json import), cleanly and tearing the interrupted write,
// and checks each recovery. One workload starts empty, one from a meta.json.
func TestCrashAtEveryOperation(t *testing.T) {
	id := func(n byte) [16]byte { return [16]byte{15: n} }
	on1 := localPlacement(1, 2)
	topicCmds := []Command{
		CreateTopic{Name: "a", ID: id(1), Partitions: on1, Configs: map[string]string{"retention.ms": "1000"}},
		AllocateProducerIDs{Count: 1000},
		SetTopicConfigs{Name: "a", ID: id(1), ConfigEpoch: 0, Configs: map[string]string{"segment.ms": "5"}},
		CreatePartitions{Name: "a", ID: id(1), ExpectedCount: 2, Partitions: localPlacement(1, 3)},
		CreateTopic{Name: "b", ID: id(2), Partitions: on1},
		DeleteTopic{Name: "a", ID: id(1)},
		AllocateProducerIDs{Count: 1000},
		CreateTopic{Name: "a", ID: id(3), Partitions: localPlacement(1, 1)},
		SetTopicConfigs{Name: "b", ID: id(2), ConfigEpoch: 0, Configs: map[string]string{"retention.bytes": "10"}},
		AllocateProducerIDs{Count: 7},
		// A cluster's commands: the snapshot turns version 2 from here.
		RegisterBroker{ID: 1, Incarnation: id(20), Listener: "h:9092"},
		UnfenceBroker{ID: 1, Epoch: 1},
		ChangePartitions{Changes: []PartitionChange{{Topic: "b", TopicID: id(2), Partition: 1, Leader: 1, ISR: []int32{1}}}},
		CreateTopic{Name: "c", ID: id(4), Partitions: on1},
	}
	legacy := writeLegacyJSON(t, legacyState{
		ClusterID: "old-cluster",
		Topics: map[string]*legacyTopic{
			"x":    {Name: "x", ID: id(10), Partitions: 3, Configs: map[string]string{"cleanup.policy": "delete"}},
			"keep": {Name: "keep", ID: id(11), Partitions: 1},
		},
		NextProducerIDFrom: 3000,
	})
	workloads := map[string]crashWorkload{
		"empty":  {commands: append([]Command{InitCluster{ClusterID: "c1"}}, topicCmds...)},
		"legacy": {legacy: legacy, commands: append([]Command{DeleteTopic{Name: "x", ID: id(10)}}, topicCmds...)},
	}
	for name, w := range workloads {
		t.Run(name, func(t *testing.T) {
			states := w.states(t)
			base := t.TempDir()
			prepare := func(dir string) {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if w.legacy != nil {
					if err := os.WriteFile(filepath.Join(dir, legacyFile), w.legacy, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			// A run without a cut says how many operations there are to cut at.
			whole := filepath.Join(base, "whole")
			prepare(whole)
			cfs := crashfs.New(vfs.OSFS{})
			if r := w.run(t, whole, cfs); r.acked != len(w.commands) {
				t.Fatalf("uncut run acknowledged %d of %d", r.acked, len(w.commands))
			}
			total := cfs.Ops()
			if total < uint64(2*len(w.commands)) {
				t.Fatalf("only %d storage operations for %d commands", total, len(w.commands))
			}
			crashfs.CutAtEveryOperation(t, base, total, prepare,
				func(dir string, cfs *crashfs.FS) crashRun { return w.run(t, dir, cfs) },
				func(t *testing.T, dir string, r crashRun) { w.check(t, dir, r, states) })
		})
	}
}
