package group

import (
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kbin"
)

// Records of consumer-protocol groups (KIP-848) in __consumer_offsets, in Kafka's schemas
// (group-coordinator/src/main/resources/common/message in Apache Kafka; kmsg has no structs for
// them, so they are written here). Keys are not flexible: int16 version, then int16-length
// strings. Values are flexible: int16 version 0, compact strings and arrays, tagged fields.
//
//	key v3 ConsumerGroupMetadataKey                 group            → Epoch
//	key v4 ConsumerGroupPartitionMetadataKey        group            → (read and ignored: the
//	                                                                    partitions are looked up)
//	key v5 ConsumerGroupMemberMetadataKey           group, member    → InstanceId, RackId,
//	                                                                    ClientId, ClientHost,
//	                                                                    SubscribedTopicNames,
//	                                                                    SubscribedTopicRegex,
//	                                                                    RebalanceTimeoutMs,
//	                                                                    ServerAssignor
//	key v6 ConsumerGroupTargetAssignmentMetadataKey group            → AssignmentEpoch
//	key v7 ConsumerGroupTargetAssignmentMemberKey   group, member    → TopicPartitions
//	key v8 ConsumerGroupCurrentMemberAssignmentKey  group, member    → MemberEpoch,
//	                                                                    PreviousMemberEpoch, State,
//	                                                                    AssignedPartitions (with
//	                                                                    AssignmentEpochs, tag 0),
//	                                                                    PartitionsPendingRevocation
//
// Topic partitions are named by topic id; a topic that no longer exists is dropped on replay.

const (
	keyConsumerMetadata       int16 = 3
	keyConsumerPartitionMeta  int16 = 4
	keyConsumerMember         int16 = 5
	keyConsumerTargetMetadata int16 = 6
	keyConsumerTargetMember   int16 = 7
	keyConsumerCurrent        int16 = 8
)

// Kafka's MemberState values in the current-assignment record.
const (
	memberStateStable     int8 = 0
	memberStateUnrevoked  int8 = 2
	memberStateUnreleased int8 = 1
)

// consumerRecord is one decoded consumer-group record; which fields are set depends on kind.
type consumerRecord struct {
	kind   int16
	member string
	epoch  int32 // group epoch (v3), assignment epoch (v6), member epoch (v8)
	prev   int32 // previous member epoch (v8)

	instanceID, rack, regex, assignor *string // v5
	clientID, clientHost              string
	topics                            []string
	rebalanceMs                       int32

	assigned map[[16]byte][]int32 // v7 target, v8 assigned
	since    map[[16]byte][]int32 // v8: the epoch each assigned partition came with
	revoking map[[16]byte][]int32 // v8
}

func consumerKey(version int16, group string, member string) []byte {
	b := kbin.AppendInt16(nil, version)
	b = kbin.AppendString(b, group)
	if version == keyConsumerMember || version == keyConsumerTargetMember || version == keyConsumerCurrent {
		b = kbin.AppendString(b, member)
	}
	return b
}

func valueStart() []byte { return kbin.AppendInt16(nil, 0) }

func appendTags(b []byte) []byte { return kbin.AppendUvarint(b, 0) }

// appendTopicPartitions writes []TopicPartitions; epochs, when non-nil, goes in tag 0 of each
// topic (AssignmentEpochs, aligned with Partitions).
func appendTopicPartitions(b []byte, parts map[[16]byte][]int32, epochs map[[16]byte][]int32) []byte {
	ids := make([][16]byte, 0, len(parts))
	for id := range parts {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b [16]byte) int { return slices.Compare(a[:], b[:]) })
	b = kbin.AppendCompactArrayLen(b, len(ids))
	for _, id := range ids {
		b = kbin.AppendUuid(b, id)
		b = kbin.AppendCompactArrayLen(b, len(parts[id]))
		for _, p := range parts[id] {
			b = kbin.AppendInt32(b, p)
		}
		if e, ok := epochs[id]; ok {
			var tag []byte
			tag = kbin.AppendCompactArrayLen(tag, len(e))
			for _, v := range e {
				tag = kbin.AppendInt32(tag, v)
			}
			b = kbin.AppendUvarint(b, 1) // one tagged field
			b = kbin.AppendUvarint(b, 0) // tag 0
			b = kbin.AppendUvarint(b, uint32(len(tag)))
			b = append(b, tag...)
		} else {
			b = appendTags(b)
		}
	}
	return b
}

func consumerMetadataValue(epoch int32) []byte {
	return appendTags(kbin.AppendInt32(valueStart(), epoch))
}

func consumerMemberValue(m *consumerMember) []byte {
	b := valueStart()
	b = kbin.AppendCompactNullableString(b, m.instanceID)
	b = kbin.AppendCompactNullableString(b, m.rack)
	b = kbin.AppendCompactString(b, m.clientID)
	b = kbin.AppendCompactString(b, m.clientHost)
	b = kbin.AppendCompactArrayLen(b, len(m.topics))
	for _, t := range m.topics {
		b = kbin.AppendCompactString(b, t)
	}
	var regex *string
	if m.regex != nil {
		s := m.regex.String()
		regex = &s
	}
	b = kbin.AppendCompactNullableString(b, regex)
	b = kbin.AppendInt32(b, int32(m.rebalance.Milliseconds()))
	var assignor *string
	if m.assignor != "" {
		assignor = &m.assignor
	}
	b = kbin.AppendCompactNullableString(b, assignor)
	return appendTags(b)
}

func consumerTargetMetadataValue(epoch int32) []byte {
	return appendTags(kbin.AppendInt32(valueStart(), epoch))
}

func consumerTargetMemberValue(parts map[[16]byte][]int32) []byte {
	return appendTags(appendTopicPartitions(valueStart(), parts, nil))
}

func consumerCurrentValue(epoch, prev int32, state int8, assigned, since, revoking map[[16]byte][]int32) []byte {
	b := valueStart()
	b = kbin.AppendInt32(b, epoch)
	b = kbin.AppendInt32(b, prev)
	b = kbin.AppendInt8(b, state)
	b = appendTopicPartitions(b, assigned, since)
	b = appendTopicPartitions(b, revoking, nil)
	return appendTags(b)
}

// readTags skips a tagged-field section, handing each field to f (nil: skip all).
func readTags(r *kbin.Reader, f func(tag uint32, r *kbin.Reader)) {
	for n := r.Uvarint(); n > 0 && r.Ok(); n-- {
		tag := r.Uvarint()
		field := kbin.Reader{Src: r.Span(int(r.Uvarint()))}
		if f != nil {
			f(tag, &field)
		}
	}
}

func readTopicPartitions(r *kbin.Reader, epochs map[[16]byte][]int32) map[[16]byte][]int32 {
	out := make(map[[16]byte][]int32)
	n := r.CompactArrayLen()
	for i := int32(0); i < n && r.Ok(); i++ {
		id := r.Uuid()
		var ps []int32
		for k := r.CompactArrayLen(); k > 0 && r.Ok(); k-- {
			ps = append(ps, r.Int32())
		}
		out[id] = ps
		readTags(r, func(tag uint32, f *kbin.Reader) {
			if tag != 0 || epochs == nil {
				return
			}
			var e []int32
			for k := f.CompactArrayLen(); k > 0 && f.Ok(); k-- {
				e = append(e, f.Int32())
			}
			epochs[id] = e
		})
	}
	return out
}

// decodeConsumerRecord decodes a record whose key version is 3 to 8.
func decodeConsumerRecord(rec Record, version int16) (d decoded, err error) {
	kr := kbin.Reader{Src: rec.Key}
	kr.Int16()
	cr := &consumerRecord{kind: version}
	d.kind, d.group, d.consumer = kindConsumer, kr.String(), cr
	if version == keyConsumerMember || version == keyConsumerTargetMember || version == keyConsumerCurrent {
		cr.member = kr.String()
	}
	if err := kr.Complete(); err != nil || len(kr.Src) != 0 {
		return d, fmt.Errorf("%w: consumer group key %x", ErrCorrupt, rec.Key)
	}
	if rec.Value == nil {
		return d, nil
	}
	r := kbin.Reader{Src: rec.Value}
	if v := r.Int16(); r.Ok() && v != 0 {
		return d, fmt.Errorf("%w: unknown consumer group value version %d (key version %d)", ErrCorrupt, v, version)
	}
	switch version {
	case keyConsumerMetadata, keyConsumerTargetMetadata:
		cr.epoch = r.Int32()
	case keyConsumerPartitionMeta:
		r.Src = nil // ignored: partitions are looked up
	case keyConsumerMember:
		cr.instanceID = r.CompactNullableString()
		cr.rack = r.CompactNullableString()
		cr.clientID = r.CompactString()
		cr.clientHost = r.CompactString()
		for n := r.CompactArrayLen(); n > 0 && r.Ok(); n-- {
			cr.topics = append(cr.topics, r.CompactString())
		}
		cr.regex = r.CompactNullableString()
		cr.rebalanceMs = r.Int32()
		cr.assignor = r.CompactNullableString()
	case keyConsumerTargetMember:
		cr.assigned = readTopicPartitions(&r, nil)
	case keyConsumerCurrent:
		cr.epoch = r.Int32()
		cr.prev = r.Int32()
		r.Int8() // the state follows from the partitions
		cr.since = make(map[[16]byte][]int32)
		cr.assigned = readTopicPartitions(&r, cr.since)
		cr.revoking = readTopicPartitions(&r, nil)
	}
	if version != keyConsumerPartitionMeta {
		readTags(&r, nil)
	}
	if err := r.Complete(); err != nil {
		return d, fmt.Errorf("%w: consumer group value (key version %d): %v", ErrCorrupt, version, err)
	}
	return d, nil
}
