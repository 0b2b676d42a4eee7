package kafkanet

// One client connection. Three parties touch it:
//
//   - the gnet event loop (onTraffic, onClose): cuts the byte stream into frames, copies each
//     frame out of gnet's buffer exactly once, and queues it. It never decodes a body and never
//     waits for a handler.
//   - the connection's request goroutine (serve): parses and decodes frames and calls handlers
//     strictly in arrival order, one at a time; once the connection is closed it runs the
//     handler-set end hook (atEnd) and ends.
//   - whoever calls a request's respond, from any goroutine at any time: encodes the response
//     and writes every response that is now at the head of the line, in request order —
//     straight to the socket with a non-blocking sendmsg when gnet holds nothing unsent for the
//     connection, else (and for whatever the socket did not take) through the event loop.
//     While the request goroutine handles a burst of produce requests (setCorked), what
//     becomes ready is held and written when the burst ends.
//
// Backpressure: at most maxInFlight requests per connection may be queued or awaiting their
// response, and together they may hold at most Server.connBytes of frames (the larger of one
// maximal request and minConnBytes; a frame is always admitted when nothing else is pending).
// At either bound onTraffic stops taking frames out of gnet's inbound buffer, and the respond
// that frees a place wakes it again. A frame's buffer grows as its bytes arrive beyond its first
// MiB, so a size prefix alone costs little. gnet cannot stop reading the socket, so while paused
// the unparsed backlog grows inside gnet; once it exceeds connBytes too the client is ignoring
// flow control and its connection is closed, so one connection holds at most about twice
// connBytes. Kafka clients keep far fewer requests in flight (max.in.flight, 5 by default), so a
// well-behaved client never meets either limit.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sys/unix"
)

// maxInFlight bounds the requests of one connection that are queued or awaiting a response.
const maxInFlight = 128

type connection struct {
	srv    *Server
	gc     gnet.Conn
	id     uint64 // unique in the Server, never reused; from 1
	remote string
	log    *slog.Logger

	// Event loop only.
	partial []byte // frame being received, grown as its bytes arrive; nil between frames
	want    int    // size of the frame being received, from its prefix
	filled  int    // bytes of partial received so far

	queue chan []byte   // whole frames in arrival order; capacity maxInFlight never fills
	done  chan struct{} // closed by onClose

	inflight atomic.Int32 // frames queued and not yet answered; at most maxInFlight
	queued   atomic.Int64 // bytes of those frames and of the one being received
	paused   atomic.Bool  // onTraffic stopped at a bound and waits for a wake
	// memWaiting: on the broker-wide memory's waiting list; requestMemory.mu.
	memWaiting bool

	// place is where the connection is counted: connCounted, connOnProbation, ... (conn_limit.go).
	place atomic.Int32

	// Request goroutine only: requests admitted so far (conn_limit.go).
	requests int
	// Request goroutine only: the size of the frame being handled, recorded in its slot.
	handling int
	// Request goroutine only: corked as last set by setCorked, read without mu, and the
	// requests of the burst still to come (corkFor).
	corkedByServe bool
	burstLeft     int

	// Request goroutine only.
	apiLogs map[int16]*slog.Logger
	warned  map[int32]bool // key<<16|version already logged as unsupported
	// atEnd, set by a handler (Context.AtConnEnd), runs on the request goroutine once the
	// connection is closed: after every handler of the connection has returned, so after
	// whatever the handler that set it recorded.
	atEnd func()

	mu       sync.Mutex // guards the fields below; held while submitting writes, see complete
	closed   bool       // onClose ran: write nothing more, trigger nothing on the loop
	slots    [maxInFlight]slot
	nextSeq  uint64 // slot of the next request
	writeSeq uint64 // first slot not yet written
	// writing: a response write is queued on the event loop and its callback has not yet
	// finished; responses ready meanwhile wait in out and that callback writes them, so a burst
	// of completions costs one loop wake-up and few writev calls instead of one each.
	writing bool
	out     [][]byte
	// corked: the request goroutine is handling a burst of produce requests (setCorked);
	// responses ready meanwhile wait in held, in order, and leave together when it ends.
	corked bool
	held   [][]byte
	// loopOwns: gnet may hold bytes it has not sent yet (its outbound buffer, as the last write
	// callback found it), so responses go through the loop, behind them. When neither this nor
	// writing is set, nothing of the connection is unsent and a response is written straight
	// to the socket (writeDirect): no loop wake-up on the path of every answer.
	loopOwns bool
}

// slot is the response place of one request, indexed by its sequence number modulo
// maxInFlight. inflight <= maxInFlight keeps live slots from colliding.
type slot struct {
	done  bool
	data  []byte   // encoded response frame; nil (and vec nil) sends nothing
	vec   [][]byte // or the frame's buffers, in order (a Fetch response's records uncopied)
	bytes int      // size of the request frame, released from queued when the slot is freed
}

// firstFrameChunk is the buffer a frame starts in; it doubles as bytes arrive, up to the size
// the prefix announced. Clients' requests are at most max.request.size (1 MiB by default), so
// they are allocated once (a 64 KiB start cost the throughput workload ~15% in copies); a
// prefix announcing more costs at most this much until its bytes come.
const firstFrameChunk = 1 << 20

func newConnection(s *Server, gc gnet.Conn) *connection {
	remote := "unknown"
	if a := gc.RemoteAddr(); a != nil {
		remote = a.String()
	}
	return &connection{
		srv:     s,
		gc:      gc,
		id:      s.nextConnID.Add(1),
		remote:  remote,
		log:     s.log.With("remote", remote),
		queue:   make(chan []byte, maxInFlight),
		done:    make(chan struct{}),
		apiLogs: make(map[int16]*slog.Logger),
		warned:  make(map[int32]bool),
	}
}

// onTraffic takes every complete frame out of gnet's buffers. Runs on the event loop.
func (c *connection) onTraffic() gnet.Action {
	for {
		if c.partial == nil {
			if c.srv.draining.Load() {
				return gnet.None // Drain: no new request; Stop closes the connection
			}
			if c.gc.InboundBuffered() < frameSizeLen {
				return gnet.None
			}
			prefix, err := c.gc.Peek(frameSizeLen)
			if err != nil {
				return gnet.None
			}
			limit := c.srv.maxRequestBytes
			if c.place.Load() == connOnProbation {
				limit = probationFrameMax
			}
			size, err := frameSize(prefix, limit)
			if err != nil {
				c.log.Warn("refusing request frame; closing connection", "size", size,
					"socket.request.max.bytes", c.srv.maxRequestBytes, "err", err)
				return gnet.Close
			}
			if c.mustWait(int(size)) && !c.resumeAfterPause(int(size)) {
				if backlog := c.gc.InboundBuffered(); int64(backlog) > c.srv.connBytes+frameSizeLen {
					c.log.Warn("client exceeds the in-flight request bounds and keeps sending; closing connection",
						"in_flight", c.inflight.Load(), "in_flight_bytes", c.queued.Load(), "unread_bytes", backlog)
					return gnet.Close
				}
				return gnet.None
			}
			_, _ = c.gc.Discard(frameSizeLen)
			c.queued.Add(int64(size))
			c.srv.mem.take(int64(size))
			c.partial, c.want, c.filled = make([]byte, min(int(size), firstFrameChunk)), int(size), 0
		}
		for c.filled < c.want {
			if c.filled == len(c.partial) {
				if c.gc.InboundBuffered() == 0 {
					return gnet.None
				}
				grown := make([]byte, min(c.want, 2*len(c.partial)))
				copy(grown, c.partial)
				c.partial = grown
			}
			n, _ := c.gc.Read(c.partial[c.filled:])
			if n == 0 {
				return gnet.None
			}
			c.filled += n
		}
		frame := c.partial
		c.partial = nil
		c.inflight.Add(1)
		select {
		case c.queue <- frame:
		default:
			// Unreachable while inflight <= maxInFlight; closing beats blocking the loop.
			c.log.Error("request queue full despite the in-flight bound; closing connection")
			return gnet.Close
		}
	}
}

// mustWait reports whether a frame of size bytes must wait for earlier requests to be answered:
// maxInFlight are pending, or their bytes and its own would pass connBytes (one frame is always
// admitted when none is pending, so every frame allowed at all can make progress), or the
// broker-wide request memory is used up.
func (c *connection) mustWait(size int) bool {
	if c.inflight.Load() >= maxInFlight || c.srv.mem.full() {
		return true
	}
	q := c.queued.Load()
	return q > 0 && q+int64(size) > c.srv.connBytes
}

// resumeAfterPause marks the connection paused and reports whether it may go on reading after
// all. The second look closes the race with a respond that freed a place between the caller's
// check and the store of paused, and so saw nobody to wake.
func (c *connection) resumeAfterPause(size int) bool {
	c.paused.Store(true)
	if c.srv.mem.full() {
		c.srv.mem.await(c) // before the second look, so a release after it wakes us
	}
	if c.mustWait(size) {
		return false
	}
	// Whoever wins the swap resumes reading: us now, or the respond side through a wake.
	return c.paused.CompareAndSwap(true, false)
}

// onClose runs on the event loop once gnet has dropped the connection, for whatever reason.
func (c *connection) onClose(err error) {
	c.mu.Lock()
	c.closed = true
	// What the connection still holds of the broker-wide request memory: complete releases
	// nothing once closed, and frames are admitted on this loop only, so nothing races this.
	held := c.queued.Load()
	c.mu.Unlock()
	c.srv.mem.forget(c)
	c.srv.mem.release(held)
	close(c.done)
	// A request cut off by the client's close is bad input like any other: say so once.
	// At a controlled shutdown (Drain) requests left unread were refused on purpose.
	switch n := c.gc.InboundBuffered(); {
	case c.srv.draining.Load():
	case c.partial != nil:
		c.log.Warn("connection closed mid-request; the partial frame is dropped",
			"received", c.filled, "frame_size", c.want, "err", err)
	case n > 0:
		c.log.Warn("connection closed mid-request; the partial size prefix is dropped", "received", n, "err", err)
	}
	c.log.Debug("connection closed", "err", err)
}

// closeConn asks the event loop to close the connection; callable from any goroutine.
func (c *connection) closeConn() {
	c.mu.Lock()
	defer c.mu.Unlock()
	// After onClose the loop's poller may already be gone at shutdown: trigger nothing then.
	if !c.closed {
		_ = c.gc.Close()
	}
}

// serve is the connection's request goroutine.
func (c *connection) serve() {
	defer c.srv.conns.Done()
	defer func() {
		if c.atEnd != nil {
			c.atEnd()
		}
	}()
	var probation <-chan time.Time // a connection on probation must send a request in time
	if c.place.Load() == connOnProbation {
		t := time.NewTimer(probationTimeout)
		defer t.Stop()
		probation = t.C
	}
	for {
		select {
		case <-c.done:
			return
		case <-probation:
			c.srv.refuseConn(c.remote, c.srv.cfg.MaxConnections) // no request in probationTimeout
			c.closeConn()
			return
		case frame := <-c.queue:
			probation = nil
			// This frame, then every frame queued meanwhile, before waiting again.
			for frame != nil {
				select {
				case <-c.done: // closed meanwhile: do not run handlers for a gone client
					return
				default:
				}
				c.corkFor(frame)
				c.handling = len(frame)
				if !c.handle(frame) {
					c.setCorked(false)
					c.closeConn()
					return
				}
				frame = nil
				select {
				case frame = <-c.queue:
				default:
				}
			}
			c.setCorked(false)
		}
	}
}

// isProduceFrame reports whether a request frame is a Produce request (its first two bytes are
// the api key), without parsing it.
func isProduceFrame(frame []byte) bool {
	return len(frame) >= 2 && frame[0] == 0 && frame[1] == byte(kmsg.Produce)
}

// corkFor corks or uncorks the connection before frame is handled. A burst is a produce request
// and the requests queued behind it when its handling began; it ends early at a request that is
// not a produce. Requests arriving meanwhile make the next burst, so answers are never held
// longer than one burst takes, however steadily requests come.
func (c *connection) corkFor(frame []byte) {
	produce := isProduceFrame(frame)
	switch {
	case produce && c.corkedByServe && c.burstLeft > 0:
		c.burstLeft--
	case produce && len(c.queue) > 0:
		c.setCorked(false) // the answers of the burst that ended leave first
		c.burstLeft = len(c.queue)
		c.setCorked(true)
	default:
		c.setCorked(false)
	}
}

// setCorked holds back (on) or writes out (off) the responses that become ready, for the
// request goroutine: a burst of produce requests that arrived together, each answered as it is
// handled (durability none, an idempotent retry, an error), then leaves in one sendmsg instead
// of one each (2.9 times fewer under seed with durability none). Only produce
// requests are corked: their handlers never wait, so no response is held longer than it takes
// to append the rest of the burst; a request that might wait (a topic created through Raft)
// first writes out whatever was held. A lone request is never corked.
func (c *connection) setCorked(on bool) {
	if on == c.corkedByServe {
		return
	}
	c.corkedByServe = on
	c.mu.Lock()
	c.corked = on
	held := c.held
	c.held = nil
	if !on && len(held) > 0 && !c.closed {
		c.submitLocked(held)
	}
	c.mu.Unlock()
}

// handle parses one frame and runs its handler, or answers it with an error. It returns false
// when the connection must be closed; it has logged why.
func (c *connection) handle(frame []byte) bool {
	r, err := parseHeader(frame)
	if err != nil {
		if errors.Is(err, errUnknownKey) {
			c.log.Warn("request for an api key kmsg does not know; closing connection",
				"key", r.key, "version", r.version, "correlation_id", r.correlationID)
		} else {
			c.log.Warn("malformed request header; closing connection", "err", err, "frame_bytes", len(frame))
		}
		return false
	}
	if !c.admit(r.key) {
		return false
	}
	ctx := &Context{
		conn:          c,
		RemoteAddr:    c.remote,
		Key:           r.key,
		Version:       r.version,
		CorrelationID: r.correlationID,
		Log:           c.apiLog(r.key),
	}
	if r.clientID != nil {
		ctx.ClientID = *r.clientID
	}
	reg := c.srv.reg
	if !reg.Supports(r.key, r.version) {
		return c.answerUnsupported(ctx, r)
	}
	if err := r.decodeBody(); err != nil {
		ctx.Log.Warn("malformed request body; closing connection", "version", r.version,
			"correlation_id", r.correlationID, "err", err)
		return false
	}
	api, _ := reg.Lookup(r.key)
	return c.call(api.Handle, ctx, r, c.reserve())
}

// apiLog returns the connection's logger for key, cached because slog.With allocates.
func (c *connection) apiLog(key int16) *slog.Logger {
	l, ok := c.apiLogs[key]
	if !ok {
		l = c.log.With("api", kmsg.NameForKey(key))
		c.apiLogs[key] = l
	}
	return l
}

// answerUnsupported answers a request for an API or version the registry does not handle.
func (c *connection) answerUnsupported(ctx *Context, r request) bool {
	tag := int32(r.key)<<16 | int32(uint16(r.version))
	logIt := !c.warned[tag]
	c.warned[tag] = true

	if r.key == int16(kmsg.ApiVersions) {
		// KIP-511: a client whose ApiVersions is too new gets a v0 answer with the supported
		// list, and retries with the highest version on it that it knows.
		if logIt {
			// Clients newer than the broker start with their own latest version (KIP-511): routine,
			// so Debug; a version no Kafka release has is worth an Info line.
			level := slog.LevelDebug
			if r.version > (&kmsg.ApiVersionsRequest{}).MaxVersion() {
				level = slog.LevelInfo
			}
			ctx.Log.Log(context.Background(), level, "unsupported ApiVersions version; answering v0 with the supported list", "version", r.version)
		}
		resp := kmsg.NewPtrApiVersionsResponse()
		resp.SetVersion(0)
		resp.ErrorCode = kerr.UnsupportedVersion.Code
		resp.ApiKeys = c.srv.reg.Versions()
		c.complete(c.reserve(), appendResponse(nil, r.key, r.correlationID, resp))
		return true
	}

	// Other APIs: the response type at the requested version with UNSUPPORTED_VERSION, which
	// only works at a version kmsg can encode.
	if r.version < 0 || r.version > r.req.MaxVersion() {
		ctx.Log.Warn("unsupported version that kmsg cannot encode a response for; closing connection",
			"version", r.version, "correlation_id", r.correlationID)
		return false
	}
	if logIt {
		ctx.Log.Warn("unsupported api or version; answering UNSUPPORTED_VERSION", "version", r.version)
	}
	resp := r.req.ResponseKind()
	resp.SetVersion(r.version)
	setTopLevelErrorCode(resp, kerr.UnsupportedVersion.Code)
	c.complete(c.reserve(), appendResponse(nil, r.key, r.correlationID, resp))
	return true
}

// setTopLevelErrorCode sets resp's ErrorCode field if it has one. Reflection keeps this cold
// path from needing a switch over every API.
func setTopLevelErrorCode(resp kmsg.Response, code int16) {
	v := reflect.ValueOf(resp)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return
	}
	v = v.Elem()
	if v.Kind() != reflect.Struct {
		return
	}
	if f := v.FieldByName("ErrorCode"); f.IsValid() && f.Kind() == reflect.Int16 && f.CanSet() {
		f.SetInt(int64(code))
	}
}

// call runs a handler; a panic in it closes this connection only.
func (c *connection) call(h HandleFunc, ctx *Context, r request, seq uint64) (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			ctx.Log.Error("handler panicked; closing connection", "panic", fmt.Sprint(p),
				"correlation_id", r.correlationID, "stack", string(debug.Stack()))
			ok = false
		}
	}()
	h(ctx, r.req, c.responder(ctx, r.key, r.version, r.correlationID, seq))
	return true
}

// responder returns the respond function of one request.
func (c *connection) responder(ctx *Context, key, version int16, correlationID int32, seq uint64) func(kmsg.Response) {
	var called atomic.Bool
	observe := c.srv.cfg.OnRequest
	var start time.Time
	if observe != nil {
		start = time.Now()
	}
	return func(resp kmsg.Response) {
		if called.Swap(true) {
			ctx.Log.Error("respond called twice; ignoring the second response", "correlation_id", correlationID)
			return
		}
		if observe != nil {
			observe(key, time.Since(start))
		}
		if resp == nil {
			c.complete(seq, nil)
			return
		}
		if resp.Key() != key {
			ctx.Log.Error("handler responded with another api's response; closing connection",
				"response_key", resp.Key(), "correlation_id", correlationID)
			c.closeConn()
			return
		}
		frame, vec, err := encodeResponse(key, version, correlationID, resp)
		if err != nil {
			// respond may run on any goroutine, where a panic would take down the broker.
			ctx.Log.Error("encoding response failed; closing connection", "correlation_id", correlationID, "err", err)
			c.closeConn()
			return
		}
		if vec != nil {
			c.completeVec(seq, vec)
			return
		}
		c.complete(seq, frame)
	}
}

// encodeResponse sets resp to the request's version, so handlers need not, and encodes it: as
// one frame, or, for a Fetch response that carries records, as the buffers of one frame
// (encodeFetchFrame), so the records are not copied.
func encodeResponse(key, version int16, correlationID int32, resp kmsg.Response) (frame []byte, vec [][]byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("kafkanet: encode %s v%d: panic: %v", kmsg.NameForKey(key), version, p)
		}
	}()
	resp.SetVersion(version)
	if fr, isFetch := resp.(*kmsg.FetchResponse); isFetch {
		if vec, ok := encodeFetchFrame(correlationID, fr); ok {
			if len(vec) == 1 {
				return vec[0], nil, nil
			}
			return nil, vec, nil
		}
	}
	// Most responses are small (a produce answer is tens of bytes a partition): room for
	// them up front spares append's doubling from a few bytes up, an allocation a step.
	return appendResponse(make([]byte, 0, responseInitialCap), key, correlationID, resp), nil, nil
}

// responseInitialCap is the buffer a response is encoded into first.
const responseInitialCap = 256

// reserve hands out the response slot of the next request; called in arrival order.
func (c *connection) reserve() uint64 {
	c.mu.Lock()
	seq := c.nextSeq
	c.nextSeq++
	c.slots[seq%maxInFlight].bytes = c.handling
	c.mu.Unlock()
	return seq
}

// complete stores the response of slot seq and writes every response now at the head of the
// line. Writes reach the socket in submission order: the write is submitted while mu is held
// (gnet runs a loop's queued writes in submission order), and responses ready while a submitted
// write is still pending are appended to out, which that write's callback sends, on the loop,
// before any write submitted after it.
func (c *connection) complete(seq uint64, frame []byte) {
	// The broker-wide memory is released, and other connections woken, after mu.
	if freed := c.completeLocked(seq, frame, nil); freed > 0 {
		c.srv.mem.release(freed)
	}
}

// completeVec is complete for a response frame made of several buffers, written in order.
func (c *connection) completeVec(seq uint64, vec [][]byte) {
	if freed := c.completeLocked(seq, nil, vec); freed > 0 {
		c.srv.mem.release(freed)
	}
}

// completeLocked is complete under mu, with the frame as one buffer or as vec; it returns the
// request bytes freed.
func (c *connection) completeLocked(seq uint64, frame []byte, vec [][]byte) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := &c.slots[seq%maxInFlight]
	s.done, s.data, s.vec = true, frame, vec
	var batch [][]byte
	var freed int32
	var freedBytes int64
	for c.writeSeq < c.nextSeq {
		s := &c.slots[c.writeSeq%maxInFlight]
		if !s.done {
			break
		}
		switch {
		case s.data != nil && c.writing:
			c.out = append(c.out, s.data)
		case s.data != nil:
			batch = append(batch, s.data)
		case c.writing:
			c.out = append(c.out, s.vec...)
		default:
			batch = append(batch, s.vec...)
		}
		freedBytes += int64(s.bytes)
		*s = slot{}
		c.writeSeq++
		freed++
	}
	if c.closed || freed == 0 {
		return 0
	}
	if c.corked {
		// Not writing (else batch is empty), and nothing is submitted while corked, so what
		// is held stays ahead of every response after it.
		c.held = append(c.held, batch...)
	} else if len(batch) > 0 {
		c.submitLocked(batch)
	}
	c.queued.Add(-freedBytes)
	if c.inflight.Add(-freed) < maxInFlight && c.paused.CompareAndSwap(true, false) {
		_ = c.gc.Wake(nil) // resume onTraffic, which stopped at a bound (it looks again)
	}
	return freedBytes
}

// submitLocked writes the frames in batch, next on the connection: straight to the socket when
// nothing of it is unsent elsewhere, and what the socket did not take through the event loop.
// c.mu held, the connection open and no loop write pending (c.writing false).
func (c *connection) submitLocked(batch [][]byte) {
	if !c.loopOwns {
		batch = writeDirect(c.gc.Fd(), batch)
	}
	if len(batch) > 0 {
		c.writing = true
		if err := c.gc.AsyncWritev(withinIovecs(batch), c.wrote); err != nil {
			c.writing = false
			c.log.Debug("queueing response write failed", "err", err)
		}
	}
}

// writeDirect writes bufs to the socket fd with one non-blocking sendmsg (more only when the
// kernel's limit of buffers per call is reached) and returns what the socket did not take,
// which the caller hands to the event loop: a full socket, an error (the loop's write meets
// it again and closes the connection). The caller holds c.mu with the connection open and
// nothing of it unsent elsewhere: gnet calls onClose, which takes c.mu, before it closes the
// descriptor, so fd is this connection's. MSG_NOSIGNAL: a client gone is an error, not a
// signal.
func writeDirect(fd int, bufs [][]byte) [][]byte {
	for len(bufs) > 0 {
		n, err := unix.SendmsgBuffers(fd, bufs[:min(len(bufs), maxIovecs)], nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			return bufs
		}
		for n > 0 && n >= len(bufs[0]) {
			n -= len(bufs[0])
			bufs = bufs[1:]
		}
		if n > 0 {
			bufs[0] = bufs[0][n:] // the caller's own slice of the frames: reslicing is safe
			return bufs           // the socket is full
		}
	}
	return nil
}

// maxIovecs is the kernel's limit of buffers per sendmsg (UIO_MAXIOV).
const maxIovecs = 1024

// withinIovecs returns bufs with at most maxIovecs buffers, the ones beyond the limit joined
// into the last: gnet hands its writes to one writev, which fails (and closes the connection)
// beyond the kernel's limit. Only the path through the event loop (a full socket) needs it,
// and only for a Fetch response of hundreds of partitions, whose records are buffers of their
// own.
func withinIovecs(bufs [][]byte) [][]byte {
	if len(bufs) <= maxIovecs {
		return bufs
	}
	return append(bufs[:maxIovecs-1:maxIovecs-1], bytes.Join(bufs[maxIovecs-1:], nil))
}

// wake resumes a connection paused at a bound, which looks again; for the broker-wide memory,
// whose releases come from other connections. Callable from any goroutine.
func (c *connection) wake() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed && c.paused.CompareAndSwap(true, false) {
		_ = c.gc.Wake(nil)
	}
}

// wrote is the callback of a queued response write; it runs on the event loop once the write
// was made, and writes the responses that became ready meanwhile, until none is left.
func (c *connection) wrote(gc gnet.Conn, err error) error {
	c.mu.Lock()
	for {
		out := c.out
		c.out = nil
		if len(out) == 0 || c.closed || err != nil {
			c.writing = false
			// On the loop: gnet's outbound buffer is ours to read. A failed write closes the
			// connection; write nothing more straight to it meanwhile.
			c.loopOwns = err != nil || gc.OutboundBuffered() > 0
			c.mu.Unlock()
			return nil
		}
		c.mu.Unlock()
		_, err = gc.Writev(withinIovecs(out))
		c.mu.Lock()
	}
}
