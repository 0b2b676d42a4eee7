package e2e

// Raw Kafka protocol over TCP: for requests franz-go would never send (bad frames, bad batches,
// unsupported versions) and for requests whose exact wire shape matters (long-poll fetch).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// rawConn is one TCP connection speaking the Kafka protocol by hand.
type rawConn struct {
	c    net.Conn
	corr int32
	f    *kmsg.RequestFormatter
}

func dialRawErr(addr string) (*rawConn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &rawConn{c: c, f: kmsg.NewRequestFormatter(kmsg.FormatterClientID("e2e-raw"))}, nil
}

// dialRaw opens a raw connection that is closed when the test ends.
func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	rc, err := dialRawErr(addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { rc.Close() })
	return rc
}

func (r *rawConn) Close() error { return r.c.Close() }

// LocalAddr is the client side address (what the broker should log).
func (r *rawConn) LocalAddr() string { return r.c.LocalAddr().String() }

// send writes req (at req.GetVersion()) with a request header and returns its correlation id.
func (r *rawConn) send(req kmsg.Request) (int32, error) {
	r.corr++
	buf := r.f.AppendRequest(nil, req, r.corr)
	_ = r.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := r.c.Write(buf)
	return r.corr, err
}

// writeRaw writes bytes as they are.
func (r *rawConn) writeRaw(b []byte) error {
	_ = r.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := r.c.Write(b)
	return err
}

// readFrame reads one size-prefixed frame and returns its body.
func (r *rawConn) readFrame(timeout time.Duration) ([]byte, error) {
	_ = r.c.SetReadDeadline(time.Now().Add(timeout))
	var size [4]byte
	if _, err := io.ReadFull(r.c, size[:]); err != nil {
		return nil, err
	}
	n := int32(binary.BigEndian.Uint32(size[:]))
	if n < 4 || n > 256<<20 {
		return nil, fmt.Errorf("response frame size %d", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r.c, body); err != nil {
		return nil, err
	}
	return body, nil
}

// readResponse reads the response to req sent with correlation id corr, decoding it at
// version (normally req.GetVersion()).
func (r *rawConn) readResponse(req kmsg.Request, version int16, corr int32, timeout time.Duration) (kmsg.Response, error) {
	body, err := r.readFrame(timeout)
	if err != nil {
		return nil, err
	}
	if got := int32(binary.BigEndian.Uint32(body)); got != corr {
		return nil, fmt.Errorf("response correlation id %d, want %d", got, corr)
	}
	body = body[4:]
	resp := req.ResponseKind()
	resp.SetVersion(version)
	// Flexible responses carry a tag buffer in the header, except ApiVersions (always header v0).
	if resp.IsFlexible() && req.Key() != 18 {
		if len(body) < 1 || body[0] != 0 {
			return nil, fmt.Errorf("flexible response header: unexpected tag buffer %x", body[:min(len(body), 8)])
		}
		body = body[1:]
	}
	if err := resp.ReadFrom(body); err != nil {
		return nil, fmt.Errorf("decoding %T v%d: %w", resp, version, err)
	}
	return resp, nil
}

// roundTrip sends req and reads its response.
func (r *rawConn) roundTrip(req kmsg.Request, timeout time.Duration) (kmsg.Response, error) {
	corr, err := r.send(req)
	if err != nil {
		return nil, err
	}
	return r.readResponse(req, req.GetVersion(), corr, timeout)
}

// mustRoundTrip is roundTrip that fails the test on error.
func (r *rawConn) mustRoundTrip(t testing.TB, req kmsg.Request) kmsg.Response {
	t.Helper()
	resp, err := r.roundTrip(req, 30*time.Second)
	if err != nil {
		t.Fatalf("%T v%d: %v", req, req.GetVersion(), err)
	}
	return resp
}

// waitClosed reads until the broker closes the connection. It fails the test if the connection
// stays open past the deadline. Bytes received before the close are returned.
func (r *rawConn) waitClosed(t testing.TB, what string) []byte {
	t.Helper()
	_ = r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(r.c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("%s: broker kept the connection open (no close within 10s; received %d bytes)", what, len(got))
	}
	// io.ReadAll returns nil on EOF; ECONNRESET is also a close.
	return got
}

// apiVersions asks the broker which versions it supports, keyed by API key.
func apiVersions(t testing.TB, addr string) map[int16][2]int16 {
	t.Helper()
	rc := dialRaw(t, addr)
	defer rc.Close()
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 3
	req.ClientSoftwareName = "ringtail-e2e"
	req.ClientSoftwareVersion = "1.0.0"
	resp := rc.mustRoundTrip(t, req).(*kmsg.ApiVersionsResponse)
	if resp.ErrorCode != 0 {
		t.Fatalf("ApiVersions v3: error code %d", resp.ErrorCode)
	}
	out := make(map[int16][2]int16)
	for _, k := range resp.ApiKeys {
		out[k.ApiKey] = [2]int16{k.MinVersion, k.MaxVersion}
	}
	return out
}

// pickVersion returns the highest version of key both the broker and limit allow.
func pickVersion(t testing.TB, versions map[int16][2]int16, key, limit int16) int16 {
	t.Helper()
	v, ok := versions[key]
	if !ok {
		t.Fatalf("broker does not advertise API key %d", key)
	}
	if v[1] < limit {
		return v[1]
	}
	if v[0] > limit {
		t.Fatalf("broker supports API key %d only from v%d, test needs ≤ v%d", key, v[0], limit)
	}
	return limit
}

// ---- record batches by hand ----

// batchSpec describes a hand-made magic-2 record batch.
type batchSpec struct {
	values        [][]byte
	timestamp     int64   // first timestamp (ms); 0 means now
	idempotent    bool    // the batch carries producerID, producerEpoch, firstSequence
	producerID    int64   // with idempotent (0 is a producer id: a fresh broker's first)
	tsDeltas      []int64 // per-record timestamp deltas from timestamp (default all 0)
	producerEpoch int16
	firstSequence int32
	// fault injection
	magic      int8   // 0 means 2
	numRecords *int32 // override the record count written in the header
}

// encodeBatch builds the batch bytes with a correct length and CRC-32C.
func encodeBatch(s batchSpec) []byte {
	ts := s.timestamp
	if ts == 0 {
		ts = time.Now().UnixMilli()
	}
	var recs []byte
	for i, v := range s.values {
		rec := kmsg.Record{OffsetDelta: int32(i), Value: v, Key: []byte(fmt.Sprintf("k%d", i))}
		if i < len(s.tsDeltas) {
			rec.TimestampDelta64 = s.tsDeltas[i]
		}
		body := rec.AppendTo(nil) // with Length 0: one byte of varint length
		rec.Length = int32(len(body) - 1)
		recs = rec.AppendTo(recs)
	}
	magic := s.magic
	if magic == 0 {
		magic = 2
	}
	n := int32(len(s.values))
	if s.numRecords != nil {
		n = *s.numRecords
	}
	pid, epoch, seq := int64(-1), int16(-1), int32(-1)
	if s.idempotent {
		pid, epoch, seq = s.producerID, s.producerEpoch, s.firstSequence
	}
	b := kmsg.RecordBatch{
		FirstOffset:     0,
		Length:          int32(49 + len(recs)),
		Magic:           magic,
		LastOffsetDelta: int32(len(s.values) - 1),
		FirstTimestamp:  ts,
		MaxTimestamp:    ts + slices.Max(append([]int64{0}, s.tsDeltas...)),
		ProducerID:      pid,
		ProducerEpoch:   epoch,
		FirstSequence:   seq,
		NumRecords:      n,
		Records:         recs,
	}
	out := b.AppendTo(nil)
	setCRC(out)
	return out
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// setCRC recomputes the CRC-32C of a magic-2 batch (over attributes through the end).
func setCRC(batch []byte) {
	binary.BigEndian.PutUint32(batch[17:21], crc32.Checksum(batch[21:], castagnoli))
}

// batchAttributes returns the attributes of the first batch in a record set.
func batchAttributes(records []byte) (int16, error) {
	if len(records) < 61 {
		return 0, fmt.Errorf("record set of %d bytes is shorter than a batch header", len(records))
	}
	return int16(binary.BigEndian.Uint16(records[21:23])), nil
}

// rawProduce sends one batch to topic/partition with acks=all on rc and returns the partition's
// error code and base offset.
func rawProduce(t testing.TB, rc *rawConn, version int16, topic string, partition int32, batch []byte) (int16, int64) {
	t.Helper()
	req := kmsg.NewPtrProduceRequest()
	req.Version = version
	req.Acks = -1
	req.TimeoutMillis = 10000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition = partition
	rp.Records = batch
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp := rc.mustRoundTrip(t, req).(*kmsg.ProduceResponse)
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("produce response: want 1 topic with 1 partition, got %+v", resp.Topics)
	}
	p := resp.Topics[0].Partitions[0]
	return p.ErrorCode, p.BaseOffset
}
