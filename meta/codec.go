package meta

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
)

// The field encodings shared by commands and snapshots. Integers are big-endian and fixed
// width; strings, lists and maps carry a uvarint count first; a map is written sorted by key
// and must be read back strictly sorted, so every value has exactly one encoding and equal
// states give equal bytes.

func appendCount(b []byte, n int) []byte { return binary.AppendUvarint(b, uint64(n)) }

func appendString(b []byte, s string) []byte {
	b = appendCount(b, len(s))
	return append(b, s...)
}

func appendInt32s(b []byte, vs []int32) []byte {
	b = appendCount(b, len(vs))
	for _, v := range vs {
		b = binary.BigEndian.AppendUint32(b, uint32(v))
	}
	return b
}

func appendConfigs(b []byte, m map[string]string) []byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = appendCount(b, len(keys))
	for _, k := range keys {
		b = appendString(b, k)
		b = appendString(b, m[k])
	}
	return b
}

func appendInt32(b []byte, v int32) []byte { return binary.BigEndian.AppendUint32(b, uint32(v)) }
func appendInt64(b []byte, v int64) []byte { return binary.BigEndian.AppendUint64(b, uint64(v)) }

// reader decodes fields, remembering the first error so callers check once at the end.
// Every count is checked against the bytes left before anything is allocated for it, so a
// damaged count cannot ask for gigabytes.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf(format, args...)
	}
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.fail("%d bytes needed, %d left", n, len(r.b))
		return nil
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

func (r *reader) u8() byte {
	if p := r.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (r *reader) int32() int32 {
	if p := r.take(4); p != nil {
		return int32(binary.BigEndian.Uint32(p))
	}
	return 0
}

func (r *reader) int64() int64 {
	if p := r.take(8); p != nil {
		return int64(binary.BigEndian.Uint64(p))
	}
	return 0
}

func (r *reader) id() (id [16]byte) {
	copy(id[:], r.take(16))
	return id
}

// count reads a uvarint count of items at least minSize bytes each.
func (r *reader) count(minSize int) int {
	if r.err != nil {
		return 0
	}
	n, k := binary.Uvarint(r.b)
	if k <= 0 || k != len(binary.AppendUvarint(nil, n)) {
		r.fail("bad count") // malformed, or not in its shortest form, which is the only one
		return 0
	}
	r.b = r.b[k:]
	if n > math.MaxInt32 || int(n)*minSize > len(r.b) {
		r.fail("count %d larger than the %d bytes left", n, len(r.b))
		return 0
	}
	return int(n)
}

func (r *reader) string() string { return string(r.take(r.count(1))) }

func (r *reader) int32s() []int32 {
	n := r.count(4)
	if n == 0 {
		return nil
	}
	vs := make([]int32, n)
	for i := range vs {
		vs[i] = r.int32()
	}
	return vs
}

func (r *reader) configs() map[string]string {
	n := r.count(2)
	if n == 0 {
		return nil
	}
	m := make(map[string]string, n)
	prev := ""
	for i := 0; i < n; i++ {
		k, v := r.string(), r.string()
		if i > 0 && k <= prev {
			r.fail("config keys out of order: %q after %q", k, prev)
			return nil
		}
		m[k], prev = v, k
	}
	return m
}

// done fails when bytes are left over: they would mean a field this version does not know.
func (r *reader) done() error {
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d bytes left over", len(r.b))
	}
	return r.err
}
