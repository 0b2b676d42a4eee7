package replication

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The replication stream: one TCP connection per follower and leader pair, from the follower
// to the leader's --replication-listen, multiplexing every partition the follower copies from
// that leader. Frames are
//
//	u32 size (of what follows) | u8 kind | body
//
// with big-endian fixed-size fields. A follower starts with hello, then subscribes to each
// partition with fetch (its log end and last epoch: the leader checks them against its own
// history first) and acknowledges what it holds with ack. The leader answers a fetch with
// diverging (the follower's log must be cut first), refused (a Kafka error code: not the
// leader, an older or newer leader epoch, …) or a stream of data frames from the fetch offset
// on, and sends hw when its high watermark moves. Every partition frame names its subscription
// (a number the follower picks per fetch), so frames of a subscription the follower has left
// are recognised and dropped.
const (
	kindHello     byte = 1 // follower → leader: who it is
	kindFetch     byte = 2 // follower → leader: stream a partition from an offset
	kindAck       byte = 3 // follower → leader: what the follower holds of a partition
	kindStop      byte = 4 // follower → leader: stop streaming a partition
	kindData      byte = 5 // leader → follower: batches, followed by the leader's offsets
	kindHW        byte = 6 // leader → follower: the high watermark moved
	kindDiverging byte = 7 // leader → follower: cut your log first
	kindRefused   byte = 8 // leader → follower: the fetch is refused (Kafka error code)
)

// maxFrame bounds the size of every frame but data: a peer announcing more is broken or
// hostile.
const maxFrame = 64 << 10

// maxDataFrame bounds a data frame. One carries at most maxSpanBytes of batches, or a single
// batch larger than that: a topic's max.message.bytes may be raised far above it (Kafka's
// fetches likewise return a first batch larger than their limit), and __consumer_offsets takes
// batches of up to 100 MiB. No produce request is larger than socket.request.max.bytes
// (100 MiB by default), so neither is any batch.
const maxDataFrame = 128<<20 + 1024

// maxSpanBytes is the most a data frame carries, unless its one batch is larger.
const maxSpanBytes = 1 << 20

var errFrame = errors.New("replication: malformed frame")

// PartitionID names a partition on the wire: its topic id (a name may be reused by a new
// topic) and index.
type PartitionID struct {
	TopicID   [16]byte
	Partition int32
}

func (k PartitionID) String() string { return fmt.Sprintf("%x-%d", k.TopicID[:4], k.Partition) }

type hello struct {
	Follower    int32
	BrokerEpoch int64
}

type fetch struct {
	Key              PartitionID
	Sub              uint32
	LeaderEpoch      int32 // the leader epoch the follower follows
	FetchOffset      int64 // the follower's log end
	LastFetchedEpoch int32 // the epoch of its last batch, -1 for none
}

type ack struct {
	Key        PartitionID
	Sub        uint32
	LogEnd     int64
	DurableEnd int64
}

type stop struct {
	Key PartitionID
	Sub uint32
}

// dataHeader precedes Len bytes of whole batches starting at BaseOffset.
type dataHeader struct {
	Key            PartitionID
	Sub            uint32
	HighWatermark  int64
	LogStartOffset int64
	BaseOffset     int64
	Len            uint32
}

// hwUpdate carries the leader's high watermark and log start offset when either moved.
type hwUpdate struct {
	Key            PartitionID
	Sub            uint32
	HighWatermark  int64
	LogStartOffset int64
}

type diverging struct {
	Key       PartitionID
	Sub       uint32
	Epoch     int32 // the largest epoch <= the follower's last that the leader knows
	EndOffset int64 // where that epoch ends on the leader
}

type refused struct {
	Key  PartitionID
	Sub  uint32
	Code int16 // a Kafka error code
	// LogStartOffset is the leader's log start with OFFSET_OUT_OF_RANGE (the follower's log
	// ends below it: the follower restarts its log there), else -1.
	LogStartOffset int64
}

const (
	partIDSize    = 16 + 4
	helloSize     = 4 + 8
	fetchSize     = partIDSize + 4 + 4 + 8 + 4
	ackSize       = partIDSize + 4 + 8 + 8
	stopSize      = partIDSize + 4
	dataHdrSize   = partIDSize + 4 + 8 + 8 + 8 + 4
	hwSize        = partIDSize + 4 + 8 + 8
	divergingSize = partIDSize + 4 + 4 + 8
	refusedSize   = partIDSize + 4 + 2 + 8
)

// frameHeader writes a frame's size and kind for a body of n bytes.
func frameHeader(b []byte, kind byte, n int) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(1+n))
	return append(b, kind)
}

func appendKey(b []byte, k PartitionID) []byte {
	b = append(b, k.TopicID[:]...)
	return binary.BigEndian.AppendUint32(b, uint32(k.Partition))
}

func appendHello(b []byte, m hello) []byte {
	b = frameHeader(b, kindHello, helloSize)
	b = binary.BigEndian.AppendUint32(b, uint32(m.Follower))
	return binary.BigEndian.AppendUint64(b, uint64(m.BrokerEpoch))
}

func appendFetch(b []byte, m fetch) []byte {
	b = frameHeader(b, kindFetch, fetchSize)
	b = appendKey(b, m.Key)
	b = binary.BigEndian.AppendUint32(b, m.Sub)
	b = binary.BigEndian.AppendUint32(b, uint32(m.LeaderEpoch))
	b = binary.BigEndian.AppendUint64(b, uint64(m.FetchOffset))
	return binary.BigEndian.AppendUint32(b, uint32(m.LastFetchedEpoch))
}

func appendAck(b []byte, m ack) []byte {
	b = frameHeader(b, kindAck, ackSize)
	b = appendKey(b, m.Key)
	b = binary.BigEndian.AppendUint32(b, m.Sub)
	b = binary.BigEndian.AppendUint64(b, uint64(m.LogEnd))
	return binary.BigEndian.AppendUint64(b, uint64(m.DurableEnd))
}

func appendStop(b []byte, m stop) []byte {
	b = frameHeader(b, kindStop, stopSize)
	b = appendKey(b, m.Key)
	return binary.BigEndian.AppendUint32(b, m.Sub)
}

// appendDataHeader writes a data frame up to its batches, which follow (m.Len bytes).
func appendDataHeader(b []byte, m dataHeader) []byte {
	b = frameHeader(b, kindData, dataHdrSize+int(m.Len))
	b = appendKey(b, m.Key)
	b = binary.BigEndian.AppendUint32(b, m.Sub)
	b = binary.BigEndian.AppendUint64(b, uint64(m.HighWatermark))
	b = binary.BigEndian.AppendUint64(b, uint64(m.LogStartOffset))
	b = binary.BigEndian.AppendUint64(b, uint64(m.BaseOffset))
	return binary.BigEndian.AppendUint32(b, m.Len)
}

func appendHW(b []byte, m hwUpdate) []byte {
	b = frameHeader(b, kindHW, hwSize)
	b = appendKey(b, m.Key)
	b = binary.BigEndian.AppendUint32(b, m.Sub)
	b = binary.BigEndian.AppendUint64(b, uint64(m.HighWatermark))
	return binary.BigEndian.AppendUint64(b, uint64(m.LogStartOffset))
}

func appendDiverging(b []byte, m diverging) []byte {
	b = frameHeader(b, kindDiverging, divergingSize)
	b = appendKey(b, m.Key)
	b = binary.BigEndian.AppendUint32(b, m.Sub)
	b = binary.BigEndian.AppendUint32(b, uint32(m.Epoch))
	return binary.BigEndian.AppendUint64(b, uint64(m.EndOffset))
}

func appendRefused(b []byte, m refused) []byte {
	b = frameHeader(b, kindRefused, refusedSize)
	b = appendKey(b, m.Key)
	b = binary.BigEndian.AppendUint32(b, m.Sub)
	b = binary.BigEndian.AppendUint16(b, uint16(m.Code))
	return binary.BigEndian.AppendUint64(b, uint64(m.LogStartOffset))
}

// frameReader reads frames from a connection. The body of every frame but data is read into
// a reused buffer; a data frame's batches are read into a new slice the caller owns (the
// follower's WAL takes it).
type frameReader struct {
	r   io.Reader
	hdr [5]byte
	buf []byte
}

func newFrameReader(r io.Reader) *frameReader { return &frameReader{r: r, buf: make([]byte, 64)} }

// next reads a frame's header and returns its kind and body size.
func (fr *frameReader) next() (kind byte, size int, err error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return 0, 0, err
	}
	n := binary.BigEndian.Uint32(fr.hdr[:4])
	limit := uint32(maxFrame)
	if fr.hdr[4] == kindData {
		limit = maxDataFrame
	}
	if n < 1 || n > limit {
		return 0, 0, fmt.Errorf("%w: kind %d, size %d", errFrame, fr.hdr[4], n)
	}
	return fr.hdr[4], int(n) - 1, nil
}

// body reads a fixed-size body of want bytes (a frame of another size is malformed).
func (fr *frameReader) body(size, want int) (*decoder, error) {
	if size != want {
		return nil, fmt.Errorf("%w: %d bytes, want %d", errFrame, size, want)
	}
	if cap(fr.buf) < size {
		fr.buf = make([]byte, size)
	}
	b := fr.buf[:size]
	if _, err := io.ReadFull(fr.r, b); err != nil {
		return nil, err
	}
	return &decoder{b: b}, nil
}

// data reads a data frame's header and its batches.
func (fr *frameReader) data(size int) (dataHeader, []byte, error) {
	if size < dataHdrSize {
		return dataHeader{}, nil, fmt.Errorf("%w: data frame of %d bytes", errFrame, size)
	}
	d, err := fr.body(dataHdrSize, dataHdrSize)
	if err != nil {
		return dataHeader{}, nil, err
	}
	m := dataHeader{Key: d.key(), Sub: d.u32(), HighWatermark: d.i64(), LogStartOffset: d.i64(), BaseOffset: d.i64(), Len: d.u32()}
	if int(m.Len) != size-dataHdrSize {
		return dataHeader{}, nil, fmt.Errorf("%w: data frame of %d bytes says %d bytes of batches", errFrame, size, m.Len)
	}
	records := make([]byte, m.Len)
	if _, err := io.ReadFull(fr.r, records); err != nil {
		return dataHeader{}, nil, err
	}
	return m, records, nil
}

// skip discards a body (a kind this side does not read).
func (fr *frameReader) skip(size int) error {
	_, err := io.CopyN(io.Discard, fr.r, int64(size))
	return err
}

type decoder struct {
	b   []byte
	off int
}

func (d *decoder) u32() uint32 {
	v := binary.BigEndian.Uint32(d.b[d.off:])
	d.off += 4
	return v
}

func (d *decoder) i32() int32 { return int32(d.u32()) }

func (d *decoder) i64() int64 {
	v := binary.BigEndian.Uint64(d.b[d.off:])
	d.off += 8
	return int64(v)
}

func (d *decoder) i16() int16 {
	v := binary.BigEndian.Uint16(d.b[d.off:])
	d.off += 2
	return int16(v)
}

func (d *decoder) key() PartitionID {
	var k PartitionID
	copy(k.TopicID[:], d.b[d.off:d.off+16])
	d.off += 16
	k.Partition = d.i32()
	return k
}

func (d *decoder) hello() hello { return hello{Follower: d.i32(), BrokerEpoch: d.i64()} }

func (d *decoder) fetch() fetch {
	return fetch{Key: d.key(), Sub: d.u32(), LeaderEpoch: d.i32(), FetchOffset: d.i64(), LastFetchedEpoch: d.i32()}
}

func (d *decoder) ack() ack {
	return ack{Key: d.key(), Sub: d.u32(), LogEnd: d.i64(), DurableEnd: d.i64()}
}

func (d *decoder) stop() stop { return stop{Key: d.key(), Sub: d.u32()} }

func (d *decoder) hw() hwUpdate {
	return hwUpdate{Key: d.key(), Sub: d.u32(), HighWatermark: d.i64(), LogStartOffset: d.i64()}
}

func (d *decoder) diverging() diverging {
	return diverging{Key: d.key(), Sub: d.u32(), Epoch: d.i32(), EndOffset: d.i64()}
}

func (d *decoder) refused() refused {
	return refused{Key: d.key(), Sub: d.u32(), Code: d.i16(), LogStartOffset: d.i64()}
}
