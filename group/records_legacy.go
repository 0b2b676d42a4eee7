package group

import (
	"encoding/binary"
	"fmt"
	"time"
)

// The private encoding of __consumer_offsets that Ringtail wrote before it used Kafka's
// schemas. It is only read (Replay, Canonical): data directories written by older versions
// load, and their first compaction rewrites them in Kafka's schemas. Keys start with their
// kind (1 offset, 2 group), never 0, which is how they are told from Kafka's keys (an int16
// version, 0 to 8). Integers are encoding/binary varints (zig-zag for signed), strings and
// byte slices uvarint length + bytes, nullable strings varint length (-1 = null) + bytes:
//
//	offset key    = 0x01 | uvarint len | group | uvarint len | topic | partition (int32, big-endian)
//	offset value  = 0x00 | varint offset | varint leader epoch | varint commit time (Unix ms)
//	                | uvarint len | metadata
//	group key     = 0x02 | uvarint len | group
//	group value   = 0x00 | protocol type | protocol ("" when Empty) | varint generation
//	                | leader | varint state time (Unix ms) | uvarint member count, then per
//	                member: id | nullable instance id | client id | client host
//	                | varint session ms | varint rebalance ms | metadata | assignment
const (
	legacyOffsetValueV0 byte = 0
	legacyGroupValueV0  byte = 0
)

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

func decodeLegacy(rec Record) (decoded, error) {
	d := decoded{legacy: true}
	r := reader{b: rec.Key}
	d.kind = r.byte1("key kind")
	switch d.kind {
	case kindOffset:
		d.group = r.str("key group")
		d.tp.topic = r.str("key topic")
		d.tp.partition = int32(r.u32("key partition"))
	case kindGroup:
		d.group = r.str("key group")
	default:
		if r.err == nil {
			return d, fmt.Errorf("%w: unknown key kind %d", ErrCorrupt, d.kind)
		}
	}
	if err := r.end("key"); err != nil || rec.Value == nil {
		return d, err
	}
	var err error
	if d.kind == kindOffset {
		d.off, err = decodeLegacyOffsetValue(rec.Value)
	} else {
		d.meta, err = decodeLegacyGroupValue(rec.Value)
	}
	return d, err
}

func decodeLegacyOffsetValue(v []byte) (committed, error) {
	r := reader{b: v}
	if ver := r.byte1("offset value version"); r.err == nil && ver != legacyOffsetValueV0 {
		return committed{}, fmt.Errorf("%w: unknown offset value version %d", ErrCorrupt, ver)
	}
	var o committed
	o.offset = r.varint("offset")
	o.leaderEpoch = int32(r.varint("leader epoch"))
	o.commitTime = time.UnixMilli(r.varint("commit time"))
	o.metadata = r.str("metadata")
	return o, r.end("offset value")
}

func decodeLegacyGroupValue(v []byte) (groupValue, error) {
	r := reader{b: v}
	if ver := r.byte1("group value version"); r.err == nil && ver != legacyGroupValueV0 {
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
