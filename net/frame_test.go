package kafkanet

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// appendRequest appends one request frame, size prefix included, the way a client sends it.
// The broker never sends requests; tests and the fuzz corpus use it.
func appendRequest(dst []byte, correlationID int32, clientID *string, req kmsg.Request) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint16(dst, uint16(req.Key()))
	dst = binary.BigEndian.AppendUint16(dst, uint16(req.GetVersion()))
	dst = binary.BigEndian.AppendUint32(dst, uint32(correlationID))
	if clientID == nil {
		dst = binary.BigEndian.AppendUint16(dst, 0xffff)
	} else {
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(*clientID)))
		dst = append(dst, *clientID...)
	}
	if req.IsFlexible() {
		dst = append(dst, 0) // no header tags
	}
	dst = req.AppendTo(dst)
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-frameSizeLen))
	return dst
}

func TestParseRequestRoundTrip(t *testing.T) {
	id := "client-1"
	meta := kmsg.NewPtrMetadataRequest()
	meta.SetVersion(12) // flexible: header v2
	topic := "orders"
	meta.Topics = []kmsg.MetadataRequestTopic{{Topic: &topic}}
	for _, tc := range []struct {
		name     string
		req      kmsg.Request
		clientID *string
	}{
		{"metadata v12 flexible", meta, &id},
		{"apiversions v0 null client id", func() kmsg.Request {
			r := kmsg.NewPtrApiVersionsRequest()
			r.SetVersion(0)
			return r
		}(), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			frame := appendRequest(nil, 77, tc.clientID, tc.req)
			r, err := parseRequest(frame[frameSizeLen:])
			if err != nil {
				t.Fatal(err)
			}
			if r.key != tc.req.Key() || r.version != tc.req.GetVersion() || r.correlationID != 77 {
				t.Fatalf("header = %d v%d corr %d", r.key, r.version, r.correlationID)
			}
			if (r.clientID == nil) != (tc.clientID == nil) || (r.clientID != nil && *r.clientID != *tc.clientID) {
				t.Fatalf("client id = %v, want %v", r.clientID, tc.clientID)
			}
			if got, want := string(r.req.AppendTo(nil)), string(tc.req.AppendTo(nil)); got != want {
				t.Fatalf("body did not round-trip")
			}
		})
	}
}

func TestParseHeaderSkipsTags(t *testing.T) {
	req := kmsg.NewPtrMetadataRequest()
	req.SetVersion(12)
	frame := []byte{0, 3, 0, 12, 0, 0, 0, 5, 0xff, 0xff}
	// Two tagged fields: tag 0 with 3 bytes, tag 7 with 0 bytes.
	frame = append(frame, 2, 0, 3, 'a', 'b', 'c', 7, 0)
	frame = req.AppendTo(frame)
	r, err := parseRequest(frame)
	if err != nil {
		t.Fatal(err)
	}
	if r.correlationID != 5 || r.clientID != nil {
		t.Fatalf("header = %+v", r)
	}
}

func TestParseHeaderErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frame []byte
		want  error
	}{
		{"empty", nil, errHeaderTruncated},
		{"short", []byte{0, 3, 0, 12, 0, 0}, errHeaderTruncated},
		{"client id past end", []byte{0, 3, 0, 1, 0, 0, 0, 1, 0, 9, 'a'}, errHeaderTruncated},
		{"client id length -2", []byte{0, 3, 0, 1, 0, 0, 0, 1, 0xff, 0xfe}, errBadClientID},
		{"unknown key", []byte{0x7f, 0, 0, 1, 0, 0, 0, 1, 0xff, 0xff}, errUnknownKey},
		{"tag size past end", []byte{0, 3, 0, 12, 0, 0, 0, 1, 0xff, 0xff, 1, 0, 9}, errBadTags},
		{"tag count huge", []byte{0, 3, 0, 12, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f}, errBadTags},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseHeader(tc.frame); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestDecodeBodyErrors(t *testing.T) {
	// Metadata v1 whose topic array claims more entries than there are bytes.
	frame := []byte{0, 3, 0, 1, 0, 0, 0, 1, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff}
	if _, err := parseRequest(frame); err == nil {
		t.Fatal("garbage body decoded")
	}
	// A version beyond what kmsg knows cannot be decoded.
	frame = []byte{0, 3, 0x7f, 0, 0, 0, 0, 1, 0xff, 0xff, 0}
	if _, err := parseRequest(frame); !errors.Is(err, errVersionRange) {
		t.Fatalf("err = %v, want %v", err, errVersionRange)
	}
}

func TestFrameSize(t *testing.T) {
	for _, tc := range []struct {
		prefix []byte
		ok     bool
	}{
		{[]byte{0, 0, 4, 0}, true},              // 1024 == max
		{[]byte{0, 0, 4, 1}, false},             // 1025 > max
		{[]byte{0xff, 0xff, 0xff, 0xff}, false}, // -1
	} {
		if _, err := frameSize(tc.prefix, 1024); (err == nil) != tc.ok {
			t.Errorf("frameSize(%v) err = %v", tc.prefix, err)
		}
	}
}

func TestAppendResponseHeaders(t *testing.T) {
	// Flexible Metadata: correlation id then an empty tag byte.
	meta := kmsg.NewPtrMetadataResponse()
	meta.SetVersion(12)
	b := appendResponse(nil, meta.Key(), 9, meta)
	body := meta.AppendTo(nil)
	if size := int(binary.BigEndian.Uint32(b)); size != len(b)-4 || size != 4+1+len(body) || b[8] != 0 {
		t.Fatalf("flexible metadata frame = %x", b)
	}
	// Flexible ApiVersions (v3) keeps header v0: no tag byte.
	av := kmsg.NewPtrApiVersionsResponse()
	av.SetVersion(3)
	b = appendResponse(nil, av.Key(), 9, av)
	if size := int(binary.BigEndian.Uint32(b)); size != 4+len(av.AppendTo(nil)) {
		t.Fatalf("apiversions v3 frame size = %d", size)
	}
}
