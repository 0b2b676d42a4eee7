package kafkanet

// Kafka framing, kept free of gnet so it can be fuzzed and tested on plain byte slices.
//
// A request on the wire:
//
//	size           int32   big-endian; bytes that follow, excluding these 4
//	api key        int16
//	api version    int16
//	correlation id int32
//	client id      int16 length + bytes, length -1 = null
//	tagged fields  uvarint count, then per field: uvarint tag, uvarint size, bytes
//	               (only in header v2, i.e. when the request version is flexible)
//	body           kmsg-encoded request at api version
//
// A response:
//
//	size           int32
//	correlation id int32
//	tagged fields  one 0 byte (header v1, flexible versions except ApiVersions)
//	body           kmsg-encoded response

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kmsg"
)

const (
	// frameSizeLen is the length of the size prefix of every frame.
	frameSizeLen = 4

	// DefaultMaxRequestBytes is Kafka's socket.request.max.bytes default.
	DefaultMaxRequestBytes int32 = 100 << 20

	// requestHeaderMinLen covers key, version, correlation id and the client id length.
	requestHeaderMinLen = 2 + 2 + 4 + 2
)

// Errors from the frame decoder. Every one of them ends the connection it came from: after a
// malformed frame the stream position can no longer be trusted.
var (
	errFrameTooLarge   = errors.New("kafkanet: frame larger than socket.request.max.bytes")
	errFrameNegative   = errors.New("kafkanet: negative frame size")
	errHeaderTruncated = errors.New("kafkanet: truncated request header")
	errBadClientID     = errors.New("kafkanet: invalid client id length")
	errBadTags         = errors.New("kafkanet: malformed request header tagged fields")
	errUnknownKey      = errors.New("kafkanet: unknown api key")
	errVersionRange    = errors.New("kafkanet: api version outside what kmsg can decode")
)

// frameSize validates the 4-byte size prefix in hdr against max before anything is allocated
// for the frame.
func frameSize(hdr []byte, max int32) (int32, error) {
	size := int32(binary.BigEndian.Uint32(hdr[:frameSizeLen]))
	switch {
	case size < 0:
		return size, errFrameNegative
	case size > max:
		return size, fmt.Errorf("%w: %d > %d", errFrameTooLarge, size, max)
	}
	return size, nil
}

// request is one frame whose header has been parsed. Its body is decoded separately, so a
// request for a version the broker does not handle is answered without decoding a body it may
// not understand.
type request struct {
	key           int16
	version       int16
	correlationID int32
	clientID      *string
	body          []byte       // aliases the frame, which the request owns
	req           kmsg.Request // set by parseHeader when kmsg knows the key; decoded by decodeBody
}

// parseHeader parses the request header at the front of frame (the bytes after the size
// prefix). frame must be owned by the caller and outlive the request: body and, after
// decodeBody, byte fields of req alias it. For an unknown key it returns errUnknownKey with key,
// version and correlation id filled in, so the caller can log them.
func parseHeader(frame []byte) (request, error) {
	var r request
	if len(frame) < requestHeaderMinLen {
		return r, errHeaderTruncated
	}
	r.key = int16(binary.BigEndian.Uint16(frame[0:]))
	r.version = int16(binary.BigEndian.Uint16(frame[2:]))
	r.correlationID = int32(binary.BigEndian.Uint32(frame[4:]))
	idLen := int16(binary.BigEndian.Uint16(frame[8:]))
	rest := frame[requestHeaderMinLen:]
	switch {
	case idLen == -1:
	case idLen < -1:
		return r, errBadClientID
	case int(idLen) > len(rest):
		return r, errHeaderTruncated
	default:
		id := string(rest[:idLen])
		r.clientID = &id
		rest = rest[idLen:]
	}

	r.req = kmsg.RequestForKey(r.key)
	if r.req == nil {
		return r, errUnknownKey
	}
	// The header version follows from the body version's flexibility, which kmsg knows for any
	// version number, even ones it cannot decode.
	r.req.SetVersion(r.version)
	if r.req.IsFlexible() {
		var err error
		if rest, err = skipTags(rest); err != nil {
			return r, err
		}
	}
	r.body = rest
	return r, nil
}

// skipTags skips a tagged-field section. The broker knows no request-header tags yet, and
// Kafka says unknown tags are ignored.
func skipTags(b []byte) ([]byte, error) {
	count, n := binary.Uvarint(b)
	if n <= 0 {
		return nil, errBadTags
	}
	b = b[n:]
	// Each field takes at least two bytes, so a count larger than the rest is malformed; this
	// also bounds the loop for hostile counts.
	if count > uint64(len(b)) {
		return nil, errBadTags
	}
	for i := uint64(0); i < count; i++ {
		if _, n = binary.Uvarint(b); n <= 0 {
			return nil, errBadTags
		}
		b = b[n:]
		size, n := binary.Uvarint(b)
		if n <= 0 || size > uint64(len(b)-n) {
			return nil, errBadTags
		}
		b = b[n+int(size):]
	}
	return b, nil
}

// decodeBody decodes the body into r.req at r.version. kmsg's ReadFrom may keep byte slices
// pointing into the body, which is why the frame must be the request's own copy.
func (r *request) decodeBody() error {
	if r.req == nil {
		return errUnknownKey
	}
	if r.version < 0 || r.version > r.req.MaxVersion() {
		return errVersionRange
	}
	if err := r.req.ReadFrom(r.body); err != nil {
		return fmt.Errorf("kafkanet: decode %s v%d: %w", kmsg.NameForKey(r.key), r.version, err)
	}
	return nil
}

// parseRequest parses header and body of one frame (without the size prefix).
func parseRequest(frame []byte) (request, error) {
	r, err := parseHeader(frame)
	if err != nil {
		return r, err
	}
	return r, r.decodeBody()
}

// appendResponse appends one complete response frame for a request of key to dst. resp must
// already be at the request's version. ApiVersions always gets a v0 response header: a client
// that sent a version the broker does not know must still be able to read the answer.
func appendResponse(dst []byte, key int16, correlationID int32, resp kmsg.Response) []byte {
	start := len(dst)
	dst = appendResponseHeader(dst, correlationID, resp.IsFlexible() && key != int16(kmsg.ApiVersions))
	dst = resp.AppendTo(dst)
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-frameSizeLen))
	return dst
}

// appendResponseHeader appends a response frame's size prefix (zero: the caller fills it in
// once the frame is whole) and its header, v1 (with an empty tag section) when flexible.
func appendResponseHeader(dst []byte, correlationID int32, flexible bool) []byte {
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, uint32(correlationID))
	if flexible {
		dst = append(dst, 0) // no header tags
	}
	return dst
}
