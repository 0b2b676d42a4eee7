package group

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Record kinds: the first byte of every key.
const (
	kindOffset byte = 1
	kindGroup  byte = 2
)

// Value versions: the first byte of every non-tombstone value.
const (
	offsetValueV0 byte = 0
	groupValueV0  byte = 0
)

// ErrCorrupt is wrapped by every decoding error.
var ErrCorrupt = errors.New("group: corrupt __consumer_offsets record")

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendNullableString(b []byte, s *string) []byte {
	if s == nil {
		return binary.AppendVarint(b, -1)
	}
	b = binary.AppendVarint(b, int64(len(*s)))
	return append(b, *s...)
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func offsetKey(group string, tp topicPartition) []byte {
	b := make([]byte, 0, 1+2+len(group)+2+len(tp.topic)+4)
	b = append(b, kindOffset)
	b = appendString(b, group)
	b = appendString(b, tp.topic)
	return binary.BigEndian.AppendUint32(b, uint32(tp.partition))
}

func groupKey(group string) []byte {
	b := make([]byte, 0, 1+2+len(group))
	b = append(b, kindGroup)
	return appendString(b, group)
}

func offsetValue(o committed) []byte {
	b := make([]byte, 0, 24+len(o.metadata))
	b = append(b, offsetValueV0)
	b = binary.AppendVarint(b, o.offset)
	b = binary.AppendVarint(b, int64(o.leaderEpoch))
	b = binary.AppendVarint(b, o.commitTime.UnixMilli())
	return appendString(b, o.metadata)
}

// persistGroup writes g's metadata record into the current batch.
func (c *Coordinator) persistGroup(g *group, now time.Time) {
	b := []byte{groupValueV0}
	b = appendString(b, g.protocolType)
	b = appendString(b, g.protocol)
	b = binary.AppendVarint(b, int64(g.generation))
	b = appendString(b, g.leader)
	b = binary.AppendVarint(b, now.UnixMilli())
	b = binary.AppendUvarint(b, uint64(len(g.order)))
	for _, m := range g.order {
		b = appendString(b, m.id)
		b = appendNullableString(b, m.instanceID)
		b = appendString(b, m.clientID)
		b = appendString(b, m.clientHost)
		b = binary.AppendVarint(b, m.session.Milliseconds())
		b = binary.AppendVarint(b, m.rebalance.Milliseconds())
		b = appendBytes(b, m.metadataFor(g.protocol))
		b = appendBytes(b, m.assignment)
	}
	g.everPersisted = true
	c.persist(Record{groupKey(g.name), b})
}

// reader decodes the primitives above, remembering the first error.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: bad %s", ErrCorrupt, what)
	}
	r.b = nil
}

func (r *reader) byte1(what string) byte {
	if len(r.b) < 1 {
		r.fail(what)
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) varint(what string) int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail(what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes(what string) []byte {
	l, n := binary.Uvarint(r.b)
	if n <= 0 || uint64(len(r.b)-n) < l {
		r.fail(what)
		return nil
	}
	v := r.b[n : n+int(l)]
	r.b = r.b[n+int(l):]
	return append([]byte{}, v...)
}

func (r *reader) str(what string) string { return string(r.bytes(what)) }

func (r *reader) nullableStr(what string) *string {
	l := r.varint(what)
	if r.err != nil || l < 0 {
		return nil
	}
	if int64(len(r.b)) < l {
		r.fail(what)
		return nil
	}
	s := string(r.b[:l])
	r.b = r.b[l:]
	return &s
}

func (r *reader) u32(what string) uint32 {
	if len(r.b) < 4 {
		r.fail(what)
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *reader) end(what string) error {
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%w: %d trailing bytes in %s", ErrCorrupt, len(r.b), what)
	}
	return r.err
}

// groupValue is a decoded group-metadata record.
type groupValue struct {
	protocolType, protocol string
	generation             int32
	leader                 string
	stateTime              time.Time
	members                []*member
}

func decodeKey(k []byte) (kind byte, group string, tp topicPartition, err error) {
	r := reader{b: k}
	kind = r.byte1("key kind")
	switch kind {
	case kindOffset:
		group = r.str("key group")
		tp.topic = r.str("key topic")
		tp.partition = int32(r.u32("key partition"))
	case kindGroup:
		group = r.str("key group")
	default:
		if r.err == nil {
			return 0, "", tp, fmt.Errorf("%w: unknown key kind %d", ErrCorrupt, kind)
		}
	}
	return kind, group, tp, r.end("key")
}

func decodeOffsetValue(v []byte) (committed, error) {
	r := reader{b: v}
	if ver := r.byte1("offset value version"); r.err == nil && ver != offsetValueV0 {
		return committed{}, fmt.Errorf("%w: unknown offset value version %d", ErrCorrupt, ver)
	}
	var o committed
	o.offset = r.varint("offset")
	o.leaderEpoch = int32(r.varint("leader epoch"))
	o.commitTime = time.UnixMilli(r.varint("commit time"))
	o.metadata = r.str("metadata")
	return o, r.end("offset value")
}

func decodeGroupValue(v []byte) (groupValue, error) {
	r := reader{b: v}
	if ver := r.byte1("group value version"); r.err == nil && ver != groupValueV0 {
		return groupValue{}, fmt.Errorf("%w: unknown group value version %d", ErrCorrupt, ver)
	}
	var gv groupValue
	gv.protocolType = r.str("protocol type")
	gv.protocol = r.str("protocol")
	gv.generation = int32(r.varint("generation"))
	gv.leader = r.str("leader")
	gv.stateTime = time.UnixMilli(r.varint("state time"))
	n, k := binary.Uvarint(r.b)
	if k <= 0 || n > uint64(len(r.b)) {
		r.fail("member count")
	} else {
		r.b = r.b[k:]
	}
	for i := uint64(0); i < n && r.err == nil; i++ {
		m := &member{}
		m.id = r.str("member id")
		m.instanceID = r.nullableStr("instance id")
		m.clientID = r.str("client id")
		m.clientHost = r.str("client host")
		m.session = time.Duration(r.varint("session timeout")) * time.Millisecond
		m.rebalance = time.Duration(r.varint("rebalance timeout")) * time.Millisecond
		md := r.bytes("subscription")
		m.assignment = r.bytes("assignment")
		m.protocolType = gv.protocolType
		m.protocols = []protocol{{name: gv.protocol, metadata: md}}
		gv.members = append(gv.members, m)
	}
	return gv, r.end("group value")
}

// Replay rebuilds the coordinator from the __consumer_offsets records, in
// log order (a compacted log is fine: later records win, nil values delete).
// It must be called on a fresh coordinator, before any request. Groups with
// members come back Stable with their last persisted assignment and fresh
// session deadlines from now; groups without members come back Empty.
func (c *Coordinator) Replay(now time.Time, records []Record) error {
	if len(c.groups) != 0 {
		return errors.New("group: Replay on a coordinator that already has groups")
	}
	metas := make(map[string]groupValue)
	offs := make(map[string]map[topicPartition]committed)
	var names []string
	seen := make(map[string]bool)
	for i, rec := range records {
		kind, name, tp, err := decodeKey(rec.Key)
		if err != nil {
			return fmt.Errorf("record %d: %w", i, err)
		}
		if !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
		switch kind {
		case kindOffset:
			if rec.Value == nil {
				delete(offs[name], tp)
				continue
			}
			o, err := decodeOffsetValue(rec.Value)
			if err != nil {
				return fmt.Errorf("record %d: %w", i, err)
			}
			if offs[name] == nil {
				offs[name] = make(map[topicPartition]committed)
			}
			offs[name][tp] = o
		case kindGroup:
			if rec.Value == nil {
				delete(metas, name)
				continue
			}
			gv, err := decodeGroupValue(rec.Value)
			if err != nil {
				return fmt.Errorf("record %d: %w", i, err)
			}
			metas[name] = gv
		}
	}
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
