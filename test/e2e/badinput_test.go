package e2e

import (
	"encoding/binary"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// rawFrame builds a request frame by hand: size, key, version, correlation id, client id, body.
func rawFrame(key, version int16, corr int32, clientID string, body []byte) []byte {
	b := make([]byte, 4, 64+len(body))
	b = binary.BigEndian.AppendUint16(b, uint16(key))
	b = binary.BigEndian.AppendUint16(b, uint16(version))
	b = binary.BigEndian.AppendUint32(b, uint32(corr))
	b = binary.BigEndian.AppendUint16(b, uint16(len(clientID)))
	b = append(b, clientID...)
	b = append(b, body...)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

func i32p(v int32) *int32 { return &v }

// TestBadInput sends every kind of bad input the broker must refuse. For each: the right answer
// (error code or closed connection), the broker stays up, another connection keeps working, and
// the broker logs a line with the offending client's address. Records written before are intact
// afterwards, and nothing bad was written.
func TestBadInput(t *testing.T) {
	b := startBroker(t, withArgs("--max-request-bytes", "1048576"))
	adm := b.Admin(t)
	cl := b.Client(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))

	// Records that must survive everything below.
	createTopic(t, adm, "survivor", 2, nil)
	var survivors []*kgo.Record
	for i := 0; i < 100; i++ {
		survivors = append(survivors, &kgo.Record{Topic: "survivor", Partition: int32(i % 2), Value: []byte("s" + strconv.Itoa(i))})
	}
	produceSync(t, cl, survivors...)

	const topic = "bad-input" // max.message.bytes 1024; holds only the valid records sent below
	createTopic(t, adm, topic, 1, map[string]*string{"max.message.bytes": strp("1024")})

	versions := apiVersions(t, b.Addr())
	pv := pickVersion(t, versions, 0, 11)     // Produce
	mv := pickVersion(t, versions, 3, 12)     // Metadata
	cv := pickVersion(t, versions, 19, 7)     // CreateTopics
	iv := pickVersion(t, versions, 22, 4)     // InitProducerId
	other := dialRaw(t, b.Addr())             // stays open through every case
	otherMeta := kmsg.NewPtrMetadataRequest() // all topics
	otherMeta.Version = mv
	otherMeta.Topics = nil

	// healthy checks the broker process is alive and the other connection and a new one work.
	healthy := func(t *testing.T) {
		t.Helper()
		if !b.Running() {
			t.Fatalf("broker process exited")
		}
		resp, err := other.roundTrip(otherMeta, 10*time.Second)
		if err != nil {
			t.Fatalf("the other, well-behaved connection broke: %v", err)
		}
		if len(resp.(*kmsg.MetadataResponse).Brokers) == 0 {
			t.Fatalf("metadata on the other connection lists no brokers")
		}
		if err := pingApiVersions(b.Addr()); err != nil {
			t.Fatalf("a new connection does not work: %v", err)
		}
	}
	// logged checks the broker logged something about the client at addr.
	logged := func(t *testing.T, rc *rawConn) {
		t.Helper()
		b.waitLog(t, rc.LocalAddr(), "bad input from "+rc.LocalAddr())
	}
	// closed sends frame bytes on a new connection and expects the broker to close it.
	closed := func(t *testing.T, data []byte, halfClose bool) {
		t.Helper()
		rc := dialRaw(t, b.Addr())
		if err := rc.writeRaw(data); err != nil {
			t.Fatalf("write: %v", err)
		}
		if halfClose {
			_ = rc.c.(*net.TCPConn).CloseWrite()
		}
		rc.waitClosed(t, "bad frame")
		healthy(t)
		logged(t, rc)
	}

	t.Run("frame over max-request-bytes", func(t *testing.T) {
		hdr := binary.BigEndian.AppendUint32(nil, 2<<20)
		body := rawFrame(3, 1, 1, "big", make([]byte, 4096))[4:]
		closed(t, append(hdr, body...), false)
	})
	t.Run("negative frame size", func(t *testing.T) {
		closed(t, []byte{0xff, 0xff, 0xff, 0xf0, 0, 3, 0, 1}, false)
	})
	t.Run("garbage frame", func(t *testing.T) {
		// A Metadata v1 header with a topic array claiming 2^31-1 entries and no data behind it.
		closed(t, rawFrame(3, 1, 1, "garbage", []byte{0x7f, 0xff, 0xff, 0xff, 0xde, 0xad}), false)
	})
	t.Run("truncated frame", func(t *testing.T) {
		full := rawFrame(3, 1, 1, "trunc", make([]byte, 100))
		closed(t, full[:20], true)
	})
	t.Run("unknown api key", func(t *testing.T) {
		closed(t, rawFrame(999, 0, 1, "unknown-key", nil), false)
	})
	t.Run("unsupported metadata version", func(t *testing.T) {
		rc := dialRaw(t, b.Addr())
		if err := rc.writeRaw(rawFrame(3, 99, 42, "v99", []byte{0, 0, 0, 0, 0})); err != nil {
			t.Fatalf("write: %v", err)
		}
		// Either an error response with our correlation id, or a closed connection.
		body, err := rc.readFrame(10 * time.Second)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("Metadata v99: no response and no close within 10s")
		}
		if err == nil {
			if got := int32(binary.BigEndian.Uint32(body)); got != 42 {
				t.Fatalf("Metadata v99: response correlation id %d, want 42", got)
			}
			t.Logf("Metadata v99 answered with a %d-byte response", len(body))
		}
		healthy(t)
		logged(t, rc)
	})
	t.Run("unsupported ApiVersions version", func(t *testing.T) {
		rc := dialRaw(t, b.Addr())
		req := kmsg.NewPtrApiVersionsRequest()
		req.Version = 99
		req.ClientSoftwareName = "e2e"
		req.ClientSoftwareVersion = "1"
		corr, err := rc.send(req)
		if err != nil {
			t.Fatalf("send: %v", err)
		}
		resp, err := rc.readResponse(req, 0, corr, 10*time.Second)
		if err != nil {
			t.Fatalf("ApiVersions v99: want a v0 response, got %v", err)
		}
		av := resp.(*kmsg.ApiVersionsResponse)
		if av.ErrorCode != kerr.UnsupportedVersion.Code {
			t.Fatalf("ApiVersions v99: error code %d, want UNSUPPORTED_VERSION (35)", av.ErrorCode)
		}
		hasAV := false
		for _, k := range av.ApiKeys {
			hasAV = hasAV || k.ApiKey == 18
		}
		if !hasAV {
			t.Fatalf("ApiVersions v99 response does not list ApiVersions' own versions: %+v", av.ApiKeys)
		}
		healthy(t)
		logged(t, rc)
	})

	// produceBad sends one batch on a new connection and expects one of the error codes.
	produceBad := func(t *testing.T, topic string, batch []byte, want ...int16) {
		t.Helper()
		rc := dialRaw(t, b.Addr())
		ec, _ := rawProduce(t, rc, pv, topic, 0, batch)
		ok := false
		for _, w := range want {
			ok = ok || ec == w
		}
		if !ok {
			t.Fatalf("produce: error code %d (%v), want one of %v", ec, kerr.ErrorForCode(ec), want)
		}
		// The same connection still works after an error response.
		if _, err := rc.roundTrip(otherMeta, 10*time.Second); err != nil {
			t.Fatalf("connection unusable after the error response: %v", err)
		}
		healthy(t)
		logged(t, rc)
	}
	small := [][]byte{[]byte("a"), []byte("b")}

	t.Run("bad CRC", func(t *testing.T) {
		batch := encodeBatch(batchSpec{values: small})
		batch[len(batch)-2] ^= 0xff // the last record's value byte
		produceBad(t, topic, batch, kerr.CorruptMessage.Code)
	})
	t.Run("bad magic", func(t *testing.T) {
		produceBad(t, topic, encodeBatch(batchSpec{values: small, magic: 1}), kerr.CorruptMessage.Code, kerr.UnsupportedForMessageFormat.Code)
	})
	t.Run("record count mismatch", func(t *testing.T) {
		produceBad(t, topic, encodeBatch(batchSpec{values: small, numRecords: i32p(3)}), kerr.CorruptMessage.Code)
	})
	t.Run("message too large", func(t *testing.T) {
		produceBad(t, topic, encodeBatch(batchSpec{values: [][]byte{make([]byte, 4096)}}), kerr.MessageTooLarge.Code)
	})

	badNames := []string{"bad/name", "..", ".", strings.Repeat("a", 250), "has space", "ünïcode"}
	t.Run("invalid topic names on create", func(t *testing.T) {
		rc := dialRaw(t, b.Addr())
		req := kmsg.NewPtrCreateTopicsRequest()
		req.Version = cv
		req.TimeoutMillis = 10000
		for _, name := range badNames {
			rt := kmsg.NewCreateTopicsRequestTopic()
			rt.Topic = name
			rt.NumPartitions = 1
			rt.ReplicationFactor = 1
			req.Topics = append(req.Topics, rt)
		}
		resp := rc.mustRoundTrip(t, req).(*kmsg.CreateTopicsResponse)
		if len(resp.Topics) != len(badNames) {
			t.Fatalf("CreateTopics: %d topic results, want %d", len(resp.Topics), len(badNames))
		}
		for _, rt := range resp.Topics {
			if rt.ErrorCode != kerr.InvalidTopicException.Code {
				t.Errorf("create %q: error code %d, want INVALID_TOPIC_EXCEPTION (17)", rt.Topic, rt.ErrorCode)
			}
		}
		healthy(t)
		logged(t, rc)
		// 249 characters is the longest valid name.
		createTopic(t, adm, strings.Repeat("b", 249), 1, nil)
	})
	t.Run("invalid topic names on produce", func(t *testing.T) {
		for _, name := range badNames {
			produceBad(t, name, encodeBatch(batchSpec{values: small}), kerr.InvalidTopicException.Code)
		}
		md, err := adm.ListTopics(ctxTimeout(t, opTimeout))
		if err != nil {
			t.Fatalf("ListTopics: %v", err)
		}
		for _, name := range badNames {
			if _, ok := md[name]; ok {
				t.Errorf("invalid topic %q exists", name)
			}
		}
	})

	// Idempotent sequence checks over raw produce: only the valid batches below get written.
	var wantEnd int64
	t.Run("out of order sequence", func(t *testing.T) {
		rc := dialRaw(t, b.Addr())
		ip := kmsg.NewPtrInitProducerIDRequest()
		ip.Version = iv
		ip.TransactionalID = nil
		ip.TransactionTimeoutMillis = 60000
		ip.ProducerID = -1
		ip.ProducerEpoch = -1
		ipr := rc.mustRoundTrip(t, ip).(*kmsg.InitProducerIDResponse)
		if ipr.ErrorCode != 0 || ipr.ProducerID < 0 {
			t.Fatalf("InitProducerId: error %d, producer id %d", ipr.ErrorCode, ipr.ProducerID)
		}
		spec := func(seq int32, vals ...string) []byte {
			s := batchSpec{idempotent: true, producerID: ipr.ProducerID, producerEpoch: ipr.ProducerEpoch, firstSequence: seq}
			for _, v := range vals {
				s.values = append(s.values, []byte(v))
			}
			return encodeBatch(s)
		}
		first := spec(0, "seq0", "seq1")
		ec, base := rawProduce(t, rc, pv, topic, 0, first)
		if ec != 0 {
			t.Fatalf("first idempotent batch: error code %d", ec)
		}
		// A retry of the same batch is a duplicate: success with the original offset, not rewritten.
		if ec, dupBase := rawProduce(t, rc, pv, topic, 0, first); ec != 0 || dupBase != base {
			t.Fatalf("duplicate batch: error code %d base offset %d; want 0 and the original %d", ec, dupBase, base)
		}
		// A gap in the sequence.
		produceBad(t, topic, spec(5, "seq5"), kerr.OutOfOrderSequenceNumber.Code)
		// The expected next sequence is still accepted.
		if ec, nb := rawProduce(t, rc, pv, topic, 0, spec(2, "seq2")); ec != 0 || nb != base+2 {
			t.Fatalf("next in-sequence batch: error code %d base offset %d; want 0 and %d", ec, nb, base+2)
		}
		wantEnd = base + 3
	})

	// Afterwards: the broker is up, the survivors are intact, and the bad-input topic holds only
	// the three valid idempotent records.
	healthy(t)
	got := consumeAll(t, b, "survivor")
	checkContiguous(t, got)
	if n := countRecords(got); n != len(survivors) {
		t.Fatalf("survivor topic has %d records, want %d", n, len(survivors))
	}
	for i, want := range survivors {
		r := got[want.Partition][i/2]
		if string(r.Value) != string(want.Value) {
			t.Fatalf("survivor %d: value %q, want %q", i, r.Value, want.Value)
		}
	}
	if wantEnd > 0 {
		if end := endOffsets(t, adm, topic)[0]; end != wantEnd {
			t.Fatalf("bad-input topic end offset %d, want %d: a refused batch was written (or a duplicate)", end, wantEnd)
		}
		vals := []string{}
		for _, r := range consumeAll(t, b, topic)[0] {
			vals = append(vals, string(r.Value))
		}
		if strings.Join(vals, ",") != "seq0,seq1,seq2" {
			t.Fatalf("bad-input topic holds %v, want [seq0 seq1 seq2]", vals)
		}
	}
	produceSync(t, cl, &kgo.Record{Topic: "survivor", Partition: 0, Value: []byte("after")})
}
