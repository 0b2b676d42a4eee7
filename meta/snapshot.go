package meta

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"
)

// A snapshot is the whole State in one deterministic encoding (equal states, equal bytes):
//
//	"RTMS" | version (1 byte, 1) | body | CRC-32C of everything before it (4 bytes)
//	body:      cluster id | next producer id (int64) | topic count | topics sorted by name
//	topic:     name | id | config epoch (int32) | configs | partition count | partitions
//	partition: replicas | leader | leader epoch | partition epoch (int32 each) | ISR
//
// with the field encodings of codec.go. The checksum lets Restore refuse a damaged snapshot
// wherever it was stored (the local snapshot file, a Raft snapshot).

const (
	snapshotMagic   = "RTMS"
	snapshotVersion = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Snapshot encodes s.
func (s *State) Snapshot() []byte {
	b := append([]byte(snapshotMagic), snapshotVersion)
	b = appendString(b, s.clusterID)
	b = appendInt64(b, s.nextProducerID)
	names := make([]string, 0, len(s.topics))
	for name := range s.topics {
		names = append(names, name)
	}
	slices.Sort(names)
	b = appendCount(b, len(names))
	for _, name := range names {
		t := s.topics[name]
		b = appendString(b, t.Name)
		b = append(b, t.ID[:]...)
		b = appendInt32(b, t.ConfigEpoch)
		b = appendConfigs(b, t.Configs)
		b = appendCount(b, len(t.Assignments))
		for _, a := range t.Assignments {
			b = appendInt32s(b, a.Replicas)
			b = appendInt32(b, a.Leader)
			b = appendInt32(b, a.LeaderEpoch)
			b = appendInt32(b, a.PartitionEpoch)
			b = appendInt32s(b, a.ISR)
		}
	}
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// Restore replaces s with the state encoded in b by Snapshot. On error (ErrCorrupt) s is
// unchanged.
func (s *State) Restore(b []byte) error {
	n, err := decodeSnapshot(b)
	if err != nil {
		return fmt.Errorf("%w: snapshot: %v", ErrCorrupt, err)
	}
	*s = *n
	return nil
}

func decodeSnapshot(b []byte) (*State, error) {
	head := len(snapshotMagic) + 1
	if len(b) < head+4 || string(b[:len(snapshotMagic)]) != snapshotMagic {
		return nil, fmt.Errorf("not a metadata snapshot")
	}
	if v := b[len(snapshotMagic)]; v != snapshotVersion {
		return nil, fmt.Errorf("version %d (this build reads %d)", v, snapshotVersion)
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, fmt.Errorf("checksum mismatch")
	}
	r := &reader{b: body[head:]}
	s := NewState()
	s.clusterID = r.string()
	s.nextProducerID = r.int64()
	n := r.count(23) // an empty name, the id, the epoch and two empty lists
	prev := ""
	for i := 0; i < n && r.err == nil; i++ {
		t := &Topic{Name: r.string(), ID: r.id(), ConfigEpoch: r.int32()}
		t.Configs = r.configs()
		as := make([]PartitionAssignment, r.count(14)) // two empty lists and three int32s
		for j := range as {
			as[j] = PartitionAssignment{Replicas: r.int32s(), Leader: r.int32(), LeaderEpoch: r.int32(), PartitionEpoch: r.int32(), ISR: r.int32s()}
		}
		t = t.withAssignments(as)
		switch {
		case r.err != nil:
		case i > 0 && t.Name <= prev:
			r.fail("topic %q after %q: out of order or repeated", t.Name, prev)
		case len(as) == 0:
			r.fail("topic %q has no partitions", t.Name)
		case t.ID == [16]byte{} || s.byID[t.ID] != nil:
			r.fail("topic %q: id %s is zero or repeated", t.Name, formatID(t.ID))
		}
		prev = t.Name
		s.put(t)
	}
	if err := r.done(); err != nil {
		return nil, err
	}
	return s, nil
}
