package group

import (
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Record kinds, as decoded from a key of either encoding.
const (
	kindOffset   byte = 1
	kindGroup    byte = 2
	kindConsumer byte = 3 // a consumer-protocol group's record (records_consumer.go)
)

// Kafka's key versions (the int16 that starts every key of __consumer_offsets) and the value
// versions Ringtail writes: the ones Kafka 2.3 to 4.x write for the same records, so Burrow,
// kminion and Kafka's own formatter read them.
const (
	keyOffsetV0 int16 = 0 // OffsetCommitKey, written by Kafka before 0.10
	keyOffsetV1 int16 = 1 // OffsetCommitKey
	keyGroupV2  int16 = 2 // GroupMetadataKey

	offsetValueVersion int16 = 3 // OffsetCommitValue with a leader epoch, no expire timestamp
	groupValueVersion  int16 = 3 // GroupMetadataValue with instance ids, not flexible
	maxOffsetValue     int16 = 4
	maxGroupValue      int16 = 4
)

// ErrCorrupt is wrapped by every decoding error.
var ErrCorrupt = errors.New("group: corrupt __consumer_offsets record")

func offsetKey(group string, tp topicPartition) []byte {
	k := kmsg.OffsetCommitKey{Version: keyOffsetV1, Group: group, Topic: tp.topic, Partition: tp.partition}
	return k.AppendTo(make([]byte, 0, 2+2+len(group)+2+len(tp.topic)+4))
}

func groupKey(group string) []byte {
	k := kmsg.GroupMetadataKey{Version: keyGroupV2, Group: group}
	return k.AppendTo(make([]byte, 0, 2+2+len(group)))
}

func offsetValue(o committed) []byte {
	v := kmsg.OffsetCommitValue{
		Version:         offsetValueVersion,
		Offset:          o.offset,
		LeaderEpoch:     o.leaderEpoch,
		Metadata:        o.metadata,
		CommitTimestamp: o.commitTime.UnixMilli(),
	}
	return v.AppendTo(make([]byte, 0, 2+8+4+2+len(o.metadata)+8))
}

// nilIfEmpty maps Ringtail's "" (no protocol or leader yet) to Kafka's null.
func nilIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func groupValueBytes(gv groupValue) []byte {
	v := kmsg.GroupMetadataValue{
		Version:               groupValueVersion,
		ProtocolType:          gv.protocolType,
		Generation:            gv.generation,
		Protocol:              nilIfEmpty(gv.protocol),
		Leader:                nilIfEmpty(gv.leader),
		CurrentStateTimestamp: gv.stateTime.UnixMilli(),
	}
	for _, m := range gv.members {
		v.Members = append(v.Members, kmsg.GroupMetadataValueMember{
			MemberID:               m.id,
			InstanceID:             m.instanceID,
			ClientID:               m.clientID,
			ClientHost:             m.clientHost,
			RebalanceTimeoutMillis: int32(m.rebalance.Milliseconds()),
			SessionTimeoutMillis:   int32(m.session.Milliseconds()),
			Subscription:           m.metadataFor(gv.protocol),
			Assignment:             m.assignment,
		})
	}
	return v.AppendTo(nil)
}

// persistGroup writes g's metadata record into the current batch.
func (c *Coordinator) persistGroup(g *group, now time.Time) {
	b := groupValueBytes(groupValue{
		protocolType: g.protocolType, protocol: g.protocol,
		generation: g.generation, leader: g.leader,
		stateTime: now, members: g.order,
	})
	g.everPersisted = true
	c.persist(Record{groupKey(g.name), b})
}

// groupValue is a decoded group-metadata record.
type groupValue struct {
	protocolType, protocol string
	generation             int32
	leader                 string
	stateTime              time.Time
	members                []*member
}

// decoded is one record of __consumer_offsets, of either encoding.
type decoded struct {
	kind   byte
	group  string
	tp     topicPartition // kindOffset
	legacy bool           // written by Ringtail before it used Kafka's schemas
	off    committed      // kindOffset, unless a tombstone
	meta   groupValue     // kindGroup, unless a tombstone

	consumer *consumerRecord // kindConsumer
}

// isKafkaKey tells Kafka's keys from the private ones of older Ringtail versions: a Kafka key
// starts with its int16 version, so its first byte is 0 for every version Kafka has (0 to 8);
// a private key starts with its kind, 1 or 2.
func isKafkaKey(k []byte) bool { return len(k) >= 2 && k[0] == 0 }

func decodeRecord(rec Record) (decoded, error) {
	if !isKafkaKey(rec.Key) {
		return decodeLegacy(rec)
	}
	var d decoded
	switch version := int16(rec.Key[1]); version {
	case keyOffsetV0, keyOffsetV1:
		var k kmsg.OffsetCommitKey
		if err := k.ReadFrom(rec.Key); err != nil || len(k.AppendTo(nil)) != len(rec.Key) {
			return d, fmt.Errorf("%w: offset key %x", ErrCorrupt, rec.Key)
		}
		d.kind, d.group, d.tp = kindOffset, k.Group, topicPartition{k.Topic, k.Partition}
		if rec.Value == nil {
			return d, nil
		}
		var v kmsg.OffsetCommitValue
		if err := v.ReadFrom(rec.Value); err != nil {
			return d, fmt.Errorf("%w: offset value: %v", ErrCorrupt, err)
		}
		if v.Version < 0 || v.Version > maxOffsetValue {
			return d, fmt.Errorf("%w: unknown offset value version %d", ErrCorrupt, v.Version)
		}
		if v.Version < 3 {
			v.LeaderEpoch = -1
		}
		d.off = committed{offset: v.Offset, leaderEpoch: v.LeaderEpoch, metadata: v.Metadata, commitTime: time.UnixMilli(v.CommitTimestamp)}
	case keyGroupV2:
		var k kmsg.GroupMetadataKey
		if err := k.ReadFrom(rec.Key); err != nil || len(k.AppendTo(nil)) != len(rec.Key) {
			// Trailing bytes would make two keys of one group: compaction keeps both.
			return d, fmt.Errorf("%w: group key %x", ErrCorrupt, rec.Key)
		}
		d.kind, d.group = kindGroup, k.Group
		if rec.Value == nil {
			return d, nil
		}
		var v kmsg.GroupMetadataValue
		if err := v.ReadFrom(rec.Value); err != nil {
			return d, fmt.Errorf("%w: group value: %v", ErrCorrupt, err)
		}
		if v.Version < 0 || v.Version > maxGroupValue {
			return d, fmt.Errorf("%w: unknown group value version %d", ErrCorrupt, v.Version)
		}
		d.meta = groupValue{
			protocolType: v.ProtocolType, generation: v.Generation,
			stateTime: time.UnixMilli(v.CurrentStateTimestamp),
		}
		if v.Protocol != nil {
			d.meta.protocol = *v.Protocol
		}
		if v.Leader != nil {
			d.meta.leader = *v.Leader
		}
		for _, vm := range v.Members {
			d.meta.members = append(d.meta.members, &member{
				id: vm.MemberID, instanceID: vm.InstanceID, clientID: vm.ClientID, clientHost: vm.ClientHost,
				session:      time.Duration(vm.SessionTimeoutMillis) * time.Millisecond,
				rebalance:    time.Duration(vm.RebalanceTimeoutMillis) * time.Millisecond,
				protocolType: v.ProtocolType,
				protocols:    []protocol{{name: d.meta.protocol, metadata: vm.Subscription}},
				assignment:   vm.Assignment,
			})
		}
	case keyConsumerMetadata, keyConsumerPartitionMeta, keyConsumerMember, keyConsumerTargetMetadata,
		keyConsumerTargetMember, keyConsumerCurrent:
		return decodeConsumerRecord(rec, version)
	default:
		return d, fmt.Errorf("%w: unknown key version %d", ErrCorrupt, version)
	}
	return d, nil
}

// Canonical returns rec in Kafka's schemas: records of the private encoding of older Ringtail
// versions are re-encoded (legacy reports it), the others come back as they are. Compaction
// rewrites a partition through it, so after one compaction a data directory holds Kafka's
// schemas alone, and a key of either encoding names the same group or offset.
func Canonical(rec Record) (out Record, legacy bool, err error) {
	d, err := decodeRecord(rec)
	if err != nil || !d.legacy {
		return rec, false, err
	}
	switch d.kind {
	case kindOffset:
		out.Key = offsetKey(d.group, d.tp)
		if rec.Value != nil {
			out.Value = offsetValue(d.off)
		}
	case kindGroup:
		out.Key = groupKey(d.group)
		if rec.Value != nil {
			out.Value = groupValueBytes(d.meta)
		}
	}
	return out, true, nil
}

// Replay rebuilds the coordinator from the __consumer_offsets records, in
// log order (a compacted log is fine: later records win, nil values delete).
// Records of Kafka's schemas and of Ringtail's older private encoding may
// be mixed: both name a group or an offset the same way. It must be called
// on a fresh coordinator, before any request. Groups with members come back
// Stable with their last persisted assignment and fresh session deadlines
// from now; groups without members come back Empty. LegacyRecords then
// says how many records were of the private encoding.
func (c *Coordinator) Replay(now time.Time, records []Record) error {
	return c.ReplayTxn(now, records, nil)
}

// ReplayTxn is Replay of a partition that holds transactions: txns[i], when txns is not nil
// and txns[i] is, says what records[i] is in a transaction (txn_offsets.go).
func (c *Coordinator) ReplayTxn(now time.Time, records []Record, txns []*TxnInfo) error {
	if len(c.groups) != 0 {
		return errors.New("group: Replay on a coordinator that already has groups")
	}
	metas := make(map[string]groupValue)
	offs := make(map[string]map[topicPartition]committed)
	cons := make(map[string]*consumerImage)
	var names []string
	seen := make(map[string]bool)
	for i, rec := range records {
		if txns != nil && txns[i] != nil {
			name, err := c.replayTxn(rec, txns[i], offs)
			if err != nil {
				return fmt.Errorf("record %d: %w", i, err)
			}
			if name != "" && !seen[name] {
				seen[name] = true
				names = append(names, name)
			}
			continue
		}
		d, err := decodeRecord(rec)
		if err != nil {
			return fmt.Errorf("record %d: %w", i, err)
		}
		if d.legacy {
			c.legacy++
		}
		name := d.group
		if !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
		switch d.kind {
		case kindOffset:
			c.supersedeTxnOffsets(name, d.tp) // as persistOffset did when it was written
			if rec.Value == nil {
				delete(offs[name], d.tp)
				continue
			}
			if offs[name] == nil {
				offs[name] = make(map[topicPartition]committed)
			}
			offs[name][d.tp] = d.off
		case kindGroup:
			if rec.Value == nil {
				delete(metas, name)
				continue
			}
			metas[name] = d.meta
		case kindConsumer:
			if cons[name] == nil {
				cons[name] = newConsumerImage()
			}
			cons[name].apply(d.consumer, rec.Value == nil)
		}
	}
	c.replayConsumers(now, cons)
	for _, name := range names {
		gv, hasMeta := metas[name]
		if !hasMeta && len(offs[name]) == 0 {
			continue
		}
		g := c.newGroup(name, now)
		for tp, o := range offs[name] {
			g.offsets[tp] = o
		}
		if hasMeta {
			g.everPersisted = true
			g.protocolType, g.protocol = gv.protocolType, gv.protocol
			g.generation, g.leader = gv.generation, gv.leader
			g.stateSince = gv.stateTime
			for _, m := range gv.members {
				m.synced = true
				m.timer = newTimer(timerSession, g)
				m.timer.m = m
				g.addMember(m)
				c.touchSession(now, m)
			}
			if len(g.order) > 0 {
				g.state = Stable
			}
		}
		if g.state == Empty {
			c.armRetention(now, g)
		}
	}
	return nil
}

// LegacyRecords returns how many replayed records were of the private encoding of older
// Ringtail versions: the caller compacts the partition (through Canonical) to rewrite them.
func (c *Coordinator) LegacyRecords() int { return c.legacy }
