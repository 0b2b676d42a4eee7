package meta

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"testing"
)

// goldenV1 is a snapshot written by the version before brokers existed (commit aa2f636) of
// the state after goldenV1Commands.
const goldenV1 = "52544d530102633100000000000003e80101610000000000000000000000000000000100000000010c726574656e74696f6e2e6d730431303030020200000001000000020000000200000000000000000100000002020000000200000001000000020000000000000000020000000200000001d45bdb10"

func goldenV1Commands() []Command {
	return []Command{
		InitCluster{ClusterID: "c1"},
		CreateTopic{Name: "a", ID: [16]byte{15: 1}, Configs: map[string]string{"retention.ms": "1000"}, Partitions: []NewPartition{
			{Replicas: []int32{1, 2}, ISR: []int32{2}, Leader: 2}, {Replicas: []int32{2, 1}, ISR: []int32{2, 1}, Leader: 2}}},
		AllocateProducerIDs{Count: 1000},
	}
}

func applyAll(t *testing.T, st *State, cmds ...Command) {
	t.Helper()
	for _, c := range cmds {
		if _, err := Apply(st, c); err != nil {
			t.Fatalf("%T: %v", c, err)
		}
	}
}

// TestSnapshotVersions: a state no broker ever registered in is written as version 1, byte
// for byte what the version before brokers wrote (so a single node can go back to it), and
// that is read; once a broker registers, version 2, which restores to an equal state.
func TestSnapshotVersions(t *testing.T) {
	golden, err := hex.DecodeString(goldenV1)
	if err != nil {
		t.Fatal(err)
	}
	st := NewState()
	applyAll(t, st, goldenV1Commands()...)
	if got := st.Snapshot(); !bytes.Equal(got, golden) {
		t.Fatalf("single-node snapshot is not the version 1 encoding:\n got %x\nwant %x", got, golden)
	}
	restored := NewState()
	if err := restored.Restore(golden); err != nil {
		t.Fatal(err)
	}
	if formatState(restored) != formatState(st) {
		t.Fatalf("version 1 snapshot restored to\n%s\nwant\n%s", formatState(restored), formatState(st))
	}

	applyAll(t, st,
		RegisterBroker{ID: 2, Incarnation: [16]byte{1}, Listener: "h2:9092", Rack: "r"},
		RegisterBroker{ID: 1, Incarnation: [16]byte{2}, Listener: "h1:9092", ReplicationAddr: "h1:9292"},
		UnfenceBroker{ID: 1, Epoch: 2},
		BeginControlledShutdown{ID: 1, Epoch: 2},
	)
	b := st.Snapshot()
	if b[len(snapshotMagic)] != snapshotV2 {
		t.Fatalf("snapshot with brokers is version %d", b[len(snapshotMagic)])
	}
	restored = NewState()
	if err := restored.Restore(b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(restored.Snapshot(), b) || formatState(restored) != formatState(st) {
		t.Fatalf("restored\n%s\nwant\n%s", formatState(restored), formatState(st))
	}
	// A broker registered once keeps the snapshot at version 2 after it is removed: the
	// epoch counter must survive.
	applyAll(t, st, UnregisterBroker{ID: 2, Epoch: 1})
	if b := st.Snapshot(); b[len(snapshotMagic)] != snapshotV2 {
		t.Fatal("the broker epoch counter is not kept once every broker is removed")
	}
}

// snapshotV2Bytes encodes a version 2 snapshot with the brokers given (already encoded) and no
// topics, with a valid checksum, so Restore's checks of the brokers are what refuses it.
func snapshotV2Bytes(last int64, brokers ...[]byte) []byte {
	b := append([]byte(snapshotMagic), snapshotV2)
	b = appendString(b, "c")
	b = appendInt64(b, 0)
	b = appendInt64(b, last)
	b = appendCount(b, len(brokers))
	for _, br := range brokers {
		b = append(b, br...)
	}
	b = appendCount(b, 0)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func brokerBytes(id int32, epoch int64, flags byte) []byte {
	b := appendInt32(nil, id)
	b = appendInt64(b, epoch)
	b = append(b, make([]byte, 16)...)
	b = appendString(b, "h:1")
	b = appendString(b, "")
	b = appendString(b, "")
	return append(b, flags)
}

func TestRestoreRefusesBadBrokers(t *testing.T) {
	ok := snapshotV2Bytes(3, brokerBytes(1, 1, 0), brokerBytes(2, 3, brokerFenced|brokerShutdown))
	if err := NewState().Restore(ok); err != nil {
		t.Fatalf("the well-formed one: %v", err)
	}
	cases := map[string][]byte{
		"no registration in v2": snapshotV2Bytes(0),
		"unknown flag":          snapshotV2Bytes(3, brokerBytes(1, 1, 4)),
		"out of order":          snapshotV2Bytes(3, brokerBytes(2, 1, 0), brokerBytes(1, 2, 0)),
		"repeated id":           snapshotV2Bytes(3, brokerBytes(1, 1, 0), brokerBytes(1, 2, 0)),
		"negative id":           snapshotV2Bytes(3, brokerBytes(-1, 1, 0)),
		"epoch past the last":   snapshotV2Bytes(3, brokerBytes(1, 4, 0)),
		"epoch zero":            snapshotV2Bytes(3, brokerBytes(1, 0, 0)),
		"repeated epoch":        snapshotV2Bytes(3, brokerBytes(1, 2, 0), brokerBytes(2, 2, 0)),
		"version 3":             append(append([]byte(snapshotMagic), 3), ok[5:]...),
	}
	for name, b := range cases {
		st := NewState()
		if err := st.Restore(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
}

// TestNoLeaderOnAFencedBroker: whatever order the commands come in, Apply keeps a fenced
// broker from leading (FenceBroker waits for the leaderships to move, a fenced broker cannot
// become leader, and a new incarnation registers only over a fenced one).
func TestNoLeaderOnAFencedBroker(t *testing.T) {
	st := NewState()
	id := [16]byte{15: 1}
	applyAll(t, st,
		InitCluster{ClusterID: "c"},
		RegisterBroker{ID: 1, Incarnation: [16]byte{1}, Listener: "h:1"},
		RegisterBroker{ID: 2, Incarnation: [16]byte{2}, Listener: "h:2"},
		UnfenceBroker{ID: 1, Epoch: 1},
		UnfenceBroker{ID: 2, Epoch: 2},
		CreateTopic{Name: "t", ID: id, Partitions: []NewPartition{{Replicas: []int32{1, 2}, ISR: []int32{1, 2}, Leader: 1}}},
	)
	refused := []Command{
		FenceBroker{ID: 1, Epoch: 1},
		RegisterBroker{ID: 1, Incarnation: [16]byte{3}, Listener: "h:1"},
		UnregisterBroker{ID: 1, Epoch: 1},
	}
	for _, c := range refused {
		if _, err := Apply(st, c); err == nil {
			t.Fatalf("%#v applied while broker 1 leads t-0", c)
		}
	}
	applyAll(t, st, FenceBroker{ID: 2, Epoch: 2})
	if _, err := Apply(st, ChangePartitions{Changes: []PartitionChange{{Topic: "t", TopicID: id, Partition: 0, Leader: 2, ISR: []int32{1, 2}}}}); !errors.Is(err, ErrStaleCommand) {
		t.Fatalf("a fenced broker became leader: %v", err)
	}
}

// TestApplyKeepsNoReference: the ISR of a change is copied, so the proposer may reuse it.
func TestApplyKeepsNoReference(t *testing.T) {
	st := NewState()
	id := [16]byte{15: 1}
	applyAll(t, st, InitCluster{ClusterID: "c"}, CreateTopic{Name: "t", ID: id, Partitions: localPlacement(1, 1)})
	isr := []int32{1}
	applyAll(t, st, ChangePartitions{Changes: []PartitionChange{{Topic: "t", TopicID: id, Leader: 1, ISR: isr}}})
	isr[0] = 7
	if a, _ := st.Partition("t", 0); a.ISR[0] != 1 {
		t.Fatalf("the state shares the command's ISR: %v", a.ISR)
	}
}
