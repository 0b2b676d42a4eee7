package kafkanet

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// FuzzParseRequest feeds arbitrary frames (the bytes after the size prefix) through the header
// parser and the kmsg body decoder, and answers whatever parsed with a response at the same
// version, the way the connection does. Nothing may panic: a panic on a request goroutine would
// take the whole broker down. The seed corpus in testdata/fuzz/FuzzParseRequest holds real
// frames encoded by kmsg, flexible and not.
func FuzzParseRequest(f *testing.F) {
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) >= frameSizeLen {
			_, _ = frameSize(frame, DefaultMaxRequestBytes)
		}
		r, err := parseHeader(frame)
		if err != nil {
			return
		}
		// The cold path for unsupported versions builds the response kind at the request's
		// version; it must hold for every version kmsg accepts.
		if r.version >= 0 && r.version <= r.req.MaxVersion() {
			resp := r.req.ResponseKind()
			resp.SetVersion(r.version)
			setTopLevelErrorCode(resp, 35)
			_ = appendResponse(nil, r.key, r.correlationID, resp)
		}
		if err := r.decodeBody(); err != nil {
			return
		}
		// What decoded must encode again.
		_ = r.req.AppendTo(nil)
		if r.key == int16(kmsg.ApiVersions) {
			resp := kmsg.NewPtrApiVersionsResponse()
			resp.SetVersion(r.version)
			_ = appendResponse(nil, r.key, r.correlationID, resp)
		}
	})
}
