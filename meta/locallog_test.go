package meta

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/ringtail/ringtail/vfs"
	"github.com/ringtail/ringtail/vfs/errorfs"
	"golang.org/x/sys/unix"
)

func openLocal(t *testing.T, dir string, every int) *LocalLog {
	t.Helper()
	l, err := OpenLocalLog(LocalLogConfig{Dir: dir, NodeID: 1, SnapshotEvery: every})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func propose(t *testing.T, l Log, cmds ...Command) {
	t.Helper()
	for _, cmd := range cmds {
		if _, err := l.Propose(context.Background(), cmd); err != nil {
			t.Fatalf("%T: %v", cmd, err)
		}
	}
}

// someCommands initializes a cluster and makes n more changes (producer-id allocations, which
// show at once if one is applied twice or lost).
func someCommands(n int) []Command {
	cmds := []Command{InitCluster{ClusterID: "c"}}
	for i := 0; i < n; i++ {
		cmds = append(cmds, AllocateProducerIDs{Count: 10})
	}
	return cmds
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func TestLocalLogTornTailIsCut(t *testing.T) {
	for name, tail := range map[string][]byte{
		"partial header": {0, 0, 0},
		"partial body":   appendRecord(nil, 4, EncodeCommand(AllocateProducerIDs{Count: 10}))[:14],
		"bad checksum":   append(appendRecord(nil, 4, EncodeCommand(AllocateProducerIDs{Count: 1}))[:20], 0xff),
		"zeros":          make([]byte, 64),
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			l := openLocal(t, dir, 1000)
			propose(t, l, someCommands(2)...)
			want := l.State().Snapshot()
			l.Close()
			path := filepath.Join(dir, commandsFile)
			good := fileSize(t, path)
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(tail)
			f.Close()

			l = openLocal(t, dir, 1000)
			if !bytes.Equal(l.State().Snapshot(), want) {
				t.Fatalf("state after the cut:\n%s", formatState(l.State()))
			}
			if got := fileSize(t, path); got != good {
				t.Fatalf("command file is %d bytes after the cut, want %d", got, good)
			}
			propose(t, l, AllocateProducerIDs{Count: 10})
			l.Close()
			if l = openLocal(t, dir, 1000); l.State().NextProducerID() != 30 {
				t.Fatalf("next producer id %d after appending past the cut, want 30", l.State().NextProducerID())
			}
		})
	}
}

func TestLocalLogCompaction(t *testing.T) {
	dir := t.TempDir()
	l := openLocal(t, dir, 4)
	propose(t, l, someCommands(9)...) // 10 commands: snapshots after 4 and 8
	want := l.State().Snapshot()
	l.Close()
	rec := int64(len(appendRecord(nil, 1, EncodeCommand(AllocateProducerIDs{Count: 10}))))
	if got := fileSize(t, filepath.Join(dir, commandsFile)); got != 2*rec {
		t.Fatalf("command file holds %d bytes after compaction, want two records (%d)", got, 2*rec)
	}
	l = openLocal(t, dir, 4)
	if !bytes.Equal(l.State().Snapshot(), want) || l.State().NextProducerID() != 90 {
		t.Fatalf("after reopen:\n%s", formatState(l.State()))
	}
}

// TestLocalLogSkipsCommandsInTheSnapshot: a cut between writing a snapshot and emptying the
// command file leaves records the snapshot holds; replay must not apply them again.
func TestLocalLogSkipsCommandsInTheSnapshot(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, commandsFile)
	l := openLocal(t, dir, 3)
	propose(t, l, someCommands(1)...)
	beforeCompaction, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	propose(t, l, AllocateProducerIDs{Count: 10}) // the third command: snapshot, file emptied
	l.Close()
	third := appendRecord(nil, 3, EncodeCommand(AllocateProducerIDs{Count: 10}))
	if err := os.WriteFile(path, append(beforeCompaction, third...), 0o644); err != nil {
		t.Fatal(err)
	}
	l = openLocal(t, dir, 3)
	if got := l.State().NextProducerID(); got != 20 {
		t.Fatalf("next producer id %d, want 20: commands in the snapshot were applied again", got)
	}
	propose(t, l, AllocateProducerIDs{Count: 10}) // index 4, after the stale records
	l.Close()
	if l = openLocal(t, dir, 3); l.State().NextProducerID() != 30 {
		t.Fatalf("next producer id %d, want 30", l.State().NextProducerID())
	}
}

func TestLocalLogRefusesAGap(t *testing.T) {
	dir := t.TempDir()
	l := openLocal(t, dir, 1000)
	propose(t, l, someCommands(1)...)
	l.Close()
	f, err := os.OpenFile(filepath.Join(dir, commandsFile), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(appendRecord(nil, 5, EncodeCommand(AllocateProducerIDs{Count: 1})))
	f.Close()
	if _, err := OpenLocalLog(LocalLogConfig{Dir: dir}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open with commands 3 and 4 missing: %v", err)
	}
}

func TestLocalLogRefusesADamagedSnapshot(t *testing.T) {
	dir := t.TempDir()
	l := openLocal(t, dir, 2)
	propose(t, l, someCommands(1)...)
	l.Close()
	path := filepath.Join(dir, snapshotFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 1
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenLocalLog(LocalLogConfig{Dir: dir}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open with a damaged snapshot: %v", err)
	}
}

// TestLocalLogStopsAfterAFailedSync: after a failed fdatasync the command's fate is unknown
// (Linux may have dropped its pages), so the log takes nothing more until a restart, and the
// published state does not include the command.
func TestLocalLogStopsAfterAFailedSync(t *testing.T) {
	dir := t.TempDir()
	efs := errorfs.New(vfs.OSFS{})
	efs.SetFilter(commandsFile)
	l, err := OpenLocalLog(LocalLogConfig{Dir: dir, FS: efs})
	if err != nil {
		t.Fatal(err)
	}
	propose(t, l, someCommands(1)...)
	efs.FailNth(errorfs.OpSync, 1, unix.EIO)
	if _, err := l.Propose(context.Background(), AllocateProducerIDs{Count: 10}); !errors.Is(err, unix.EIO) {
		t.Fatalf("propose with a failing sync: %v", err)
	}
	if _, err := l.Propose(context.Background(), AllocateProducerIDs{Count: 10}); !errors.Is(err, unix.EIO) {
		t.Fatalf("propose after a failed sync: %v, want the first failure again", err)
	}
	if got := l.State().NextProducerID(); got != 10 {
		t.Fatalf("next producer id %d: the failed command was published", got)
	}
	l.Close()
	l = openLocal(t, dir, 1000)
	propose(t, l, AllocateProducerIDs{Count: 10}) // after a restart the log works again
}

func TestLocalLogClosed(t *testing.T) {
	l := openLocal(t, t.TempDir(), 1000)
	l.Close()
	if _, err := l.Propose(context.Background(), InitCluster{ClusterID: "c"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("propose after close: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := openLocal(t, t.TempDir(), 1000).Propose(ctx, InitCluster{ClusterID: "c"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("propose with a cancelled context: %v", err)
	}
}

// writeLegacyJSON encodes a state the way versions before the command log wrote meta.json.
func writeLegacyJSON(t *testing.T, st legacyState) []byte {
	t.Helper()
	b, err := json.MarshalIndent(&st, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestImportLegacyMetaJSON opens a directory holding testdata/legacy/meta.json, written by
// the previous meta.Store (orders with 3 partitions grown to 4 and two config overrides,
// __consumer_offsets, a topic created and deleted, 1001 producer ids handed out), plus the
// temporary file of an interrupted write of it.
func TestImportLegacyMetaJSON(t *testing.T) {
	legacy, err := os.ReadFile("testdata/legacy/meta.json")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, legacyFile), legacy, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, legacyFile+".tmp"), legacy[:10], 0o644); err != nil {
		t.Fatal(err)
	}
	ordersID := mustHexID(t, "ec748e342ce87349973e47819a16a34a")
	check := func(s *Store) {
		t.Helper()
		if s.ClusterID() != "hpaSYxrjMJ9viD289oBk1g" {
			t.Fatalf("cluster id %q", s.ClusterID())
		}
		topics := s.Topics()
		if len(topics) != 2 || topics[0].Name != "__consumer_offsets" || topics[1].Name != "orders" {
			t.Fatalf("topics %+v", topics)
		}
		o, ok := s.TopicByID(ordersID)
		if !ok || o.Name != "orders" || o.Partitions != 4 || len(o.Assignments) != 4 ||
			o.Configs["max.message.bytes"] != "2000000" || o.Configs["retention.ms"] != "1000" || len(o.Configs) != 2 {
			t.Fatalf("orders: %+v", o)
		}
		for i, a := range o.Assignments {
			if len(a.Replicas) != 1 || a.Replicas[0] != 3 || a.Leader != 3 || len(a.ISR) != 1 || a.ISR[0] != 3 || a.LeaderEpoch != 0 || a.PartitionEpoch != 0 {
				t.Fatalf("orders partition %d: %+v, want everything on node 3", i, a)
			}
		}
	}
	s, err := Open(Config{Dir: dir, NodeID: 3})
	if err != nil {
		t.Fatal(err)
	}
	check(s)
	for _, name := range []string{legacyFile, legacyFile + ".tmp"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s after the import: %v", name, err)
		}
	}
	// The old store reserved ids below 2000 (1001 handed out, so the block [1000, 2000) in
	// use): none of them may come again.
	if id, err := s.NextProducerID(); err != nil || id != 2000 {
		t.Fatalf("first producer id after the import: %d, %v; want 2000", id, err)
	}
	s.Close()
	s, err = Open(Config{Dir: dir, NodeID: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	check(s)
	if id, _ := s.NextProducerID(); id != 3000 {
		t.Fatalf("producer id after a restart: %d, want 3000", id)
	}
}

func TestImportDamagedMetaJSON(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, legacyFile), []byte(`{"cluster_id": "x", "topics": {`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Config{Dir: dir}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("open with a damaged meta.json: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, legacyFile)); err != nil {
		t.Fatalf("a meta.json that failed to import was removed: %v", err)
	}
}

func mustHexID(t *testing.T, s string) (id [16]byte) {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 16 {
		t.Fatalf("id %q: %v", s, err)
	}
	copy(id[:], b)
	return id
}
