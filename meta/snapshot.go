package meta

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"
)

// A snapshot is the whole State in one deterministic encoding (equal states, equal bytes):
//
//	"RTMS" | version (1 byte) | body | CRC-32C of everything before it (4 bytes)
//	body v1:   cluster id | next producer id (int64) | topic count | topics sorted by name
//	body v2:   cluster id | next producer id (int64) | last broker epoch (int64) |
//	           broker count | brokers sorted by id | topic count | topics sorted by name
//	broker:    id (int32) | broker epoch (int64) | incarnation | listener | replication address |
//	           rack | flags (1 byte: 1 fenced, 2 in controlled shutdown)
//	topic:     name | id | config epoch (int32) | configs | partition count | partitions
//	partition: replicas | leader | leader epoch | partition epoch (int32 each) | ISR
//
// with the field encodings of codec.go. The checksum lets Restore refuse a damaged snapshot
// wherever it was stored (the local snapshot file, a Raft snapshot).
//
// Version 2 added the brokers. A state in which no broker ever registered (every single
// node's) is still written as version 1, so a single node can go back to the version before
// brokers existed; Restore reads both.

const (
	snapshotMagic = "RTMS"
	// snapshotV1 has no brokers; snapshotV2 has them.
	snapshotV1 = 1
	snapshotV2 = 2

	brokerFenced   = 1
	brokerShutdown = 2
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Snapshot encodes s.
func (s *State) Snapshot() []byte {
	version := byte(snapshotV1)
	if s.brokerEpoch != 0 {
		version = snapshotV2
	}
	b := append([]byte(snapshotMagic), version)
	b = appendString(b, s.clusterID)
	b = appendInt64(b, s.nextProducerID)
	if version == snapshotV2 {
		b = appendInt64(b, s.brokerEpoch)
		brokers := s.Brokers()
		b = appendCount(b, len(brokers))
		for _, br := range brokers {
			b = appendInt32(b, br.ID)
			b = appendInt64(b, br.Epoch)
			b = append(b, br.Incarnation[:]...)
			b = appendString(b, br.Listener)
			b = appendString(b, br.ReplicationAddr)
			b = appendString(b, br.Rack)
			var flags byte
			if br.Fenced {
				flags |= brokerFenced
			}
			if br.InControlledShutdown {
				flags |= brokerShutdown
			}
			b = append(b, flags)
		}
	}
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
	version := b[len(snapshotMagic)]
	if version != snapshotV1 && version != snapshotV2 {
		return nil, fmt.Errorf("version %d (this build reads %d and %d)", version, snapshotV1, snapshotV2)
	}
	body, sum := b[:len(b)-4], binary.BigEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return nil, fmt.Errorf("checksum mismatch")
	}
	r := &reader{b: body[head:]}
	s := NewState()
	s.clusterID = r.string()
	s.nextProducerID = r.int64()
	if version == snapshotV2 {
		readBrokers(r, s)
	}
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

// readBrokers reads the brokers of a version 2 snapshot into s.
func readBrokers(r *reader, s *State) {
	s.brokerEpoch = r.int64()
	if r.err == nil && s.brokerEpoch < 1 {
		// A state without registrations is written as version 1.
		r.fail("last broker epoch %d in a version %d snapshot", s.brokerEpoch, snapshotV2)
	}
	n := r.count(32) // the id, the epoch, the incarnation, three empty strings and the flags
	epochs := make(map[int64]bool, n)
	prev := int32(-1)
	for i := 0; i < n && r.err == nil; i++ {
		br := Broker{ID: r.int32(), Epoch: r.int64(), Incarnation: r.id(), Listener: r.string(), ReplicationAddr: r.string(), Rack: r.string()}
		flags := r.u8()
		br.Fenced, br.InControlledShutdown = flags&brokerFenced != 0, flags&brokerShutdown != 0
		switch {
		case r.err != nil:
		case flags&^(brokerFenced|brokerShutdown) != 0:
			r.fail("broker %d: unknown flags %#x", br.ID, flags)
		case br.ID <= prev:
			r.fail("broker %d after %d: negative, out of order or repeated", br.ID, prev)
		case br.Epoch < 1 || br.Epoch > s.brokerEpoch || epochs[br.Epoch]:
			r.fail("broker %d: broker epoch %d is not 1..%d or repeated", br.ID, br.Epoch, s.brokerEpoch)
		}
		epochs[br.Epoch], prev = true, br.ID
		s.brokers[br.ID] = br
	}
}
