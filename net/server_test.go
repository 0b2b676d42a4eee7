package kafkanet

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// testBroker is a registry with a trivial ApiVersions handler and a Metadata handler whose
// answers the test controls by topic name:
//
//	"hold"    respond later, when a "release" request arrives (in reverse order)
//	"release" respond to every held request, newest first, then to this one
//	"gate…"   (any name starting so) respond from another goroutine once gate is closed
//	"block"   wait (on the request goroutine) until gate is closed, then respond
//	anything  respond at once
//
// Every Metadata response echoes the requested topic name, so a test can tell whose it is.
type testBroker struct {
	reg      *Registry
	mu       sync.Mutex
	held     []func()
	gate     chan struct{}
	gateSeen atomic.Int32
	bigSeen  atomic.Int32
}

func newTestBroker() *testBroker {
	b := &testBroker{reg: NewRegistry(), gate: make(chan struct{})}
	b.reg.Register(API{Key: 18, MinVersion: 0, MaxVersion: 3, Handle: func(_ *Context, _ kmsg.Request, respond func(kmsg.Response)) {
		resp := kmsg.NewPtrApiVersionsResponse()
		resp.ApiKeys = b.reg.Versions()
		respond(resp)
	}})
	b.reg.Register(API{Key: 3, MinVersion: 1, MaxVersion: 12, Handle: b.metadata})
	// InitProducerID is handled at v0-v1 only, to ask for an unsupported version of a handled key.
	b.reg.Register(API{Key: 22, MinVersion: 0, MaxVersion: 1, Handle: func(_ *Context, _ kmsg.Request, respond func(kmsg.Response)) {
		respond(kmsg.NewPtrInitProducerIDResponse())
	}})
	b.reg.Register(API{Key: 17, MinVersion: 0, MaxVersion: 1, Handle: func(*Context, kmsg.Request, func(kmsg.Response)) {
		panic("test handler panics")
	}})
	b.reg.Register(API{Key: 0, MinVersion: 3, MaxVersion: 11, Handle: b.produce})
	return b
}

// produce answers a Produce request naming one topic, echoed in the answer: "gate…" from
// another goroutine once gate is closed, anything else at once.
func (b *testBroker) produce(_ *Context, req kmsg.Request, respond func(kmsg.Response)) {
	preq := req.(*kmsg.ProduceRequest)
	resp := kmsg.NewPtrProduceResponse()
	resp.Topics = []kmsg.ProduceResponseTopic{{Topic: preq.Topics[0].Topic}}
	if strings.HasPrefix(preq.Topics[0].Topic, "gate") {
		b.gateSeen.Add(1)
		go func() { <-b.gate; respond(resp) }()
		return
	}
	respond(resp)
}

func produceReq(topic string) *kmsg.ProduceRequest {
	r := kmsg.NewPtrProduceRequest()
	r.Acks = -1
	r.TimeoutMillis = 1000
	r.Topics = []kmsg.ProduceRequestTopic{{Topic: topic}}
	return r
}

func (b *testBroker) metadata(_ *Context, req kmsg.Request, respond func(kmsg.Response)) {
	mreq := req.(*kmsg.MetadataRequest)
	name := ""
	if len(mreq.Topics) > 0 && mreq.Topics[0].Topic != nil {
		name = *mreq.Topics[0].Topic
	}
	resp := kmsg.NewPtrMetadataResponse()
	resp.Topics = []kmsg.MetadataResponseTopic{{Topic: &name}}
	send := func() { respond(resp) }
	if strings.HasPrefix(name, "gate") {
		name = "gate"
	}
	switch name {
	case "hold":
		b.mu.Lock()
		b.held = append(b.held, send)
		b.mu.Unlock()
	case "release":
		b.mu.Lock()
		held := b.held
		b.held = nil
		b.mu.Unlock()
		for i := len(held) - 1; i >= 0; i-- {
			held[i]()
		}
		send()
	case "big":
		// A large answer: bigTopics topics, each named by its index.
		resp.Topics = make([]kmsg.MetadataResponseTopic, bigTopics)
		for i := range resp.Topics {
			resp.Topics[i].Topic = kmsg.StringPtr(fmt.Sprintf("big-%08d", i))
		}
		send()
		b.bigSeen.Add(1)
	case "gate":
		b.gateSeen.Add(1)
		go func() { <-b.gate; send() }()
	case "block":
		b.gateSeen.Add(1)
		<-b.gate // on the request goroutine, as a handler that waits for Raft does
		send()
	default:
		send()
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func startServer(t *testing.T, reg *Registry, maxBytes int32) *Server {
	t.Helper()
	s := NewServer(ServerConfig{Listen: []string{"127.0.0.1:0"}, MaxRequestBytes: maxBytes, Logger: testLogger(t)}, reg)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return s
}

// rawClient speaks Kafka framing over a plain TCP connection.
type rawClient struct {
	t    *testing.T
	conn net.Conn
	corr int32
}

func dial(t *testing.T, s *Server) *rawClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", s.Addrs()[0], 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawClient{t: t, conn: conn}
}

// frame encodes req at version v with the next correlation id.
func (c *rawClient) frame(req kmsg.Request, v int16) []byte {
	req.SetVersion(v)
	c.corr++
	id := "raw-test"
	return appendRequest(nil, c.corr, &id, req)
}

func (c *rawClient) write(b []byte) {
	c.t.Helper()
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

// read reads one response frame and decodes it into resp at version v.
func (c *rawClient) read(resp kmsg.Response, v int16) int32 {
	c.t.Helper()
	var size [4]byte
	if _, err := io.ReadFull(c.conn, size[:]); err != nil {
		c.t.Fatalf("reading response: %v", err)
	}
	b := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(c.conn, b); err != nil {
		c.t.Fatalf("reading response: %v", err)
	}
	corr := int32(binary.BigEndian.Uint32(b))
	body := b[4:]
	resp.SetVersion(v)
	if resp.IsFlexible() && resp.Key() != 18 {
		if body[0] != 0 {
			c.t.Fatalf("response header tags = %d, want 0", body[0])
		}
		body = body[1:]
	}
	if err := resp.ReadFrom(body); err != nil {
		c.t.Fatalf("decoding %T v%d: %v", resp, v, err)
	}
	return corr
}

// expectClosed checks the server closes the connection without sending anything more.
func (c *rawClient) expectClosed() {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.conn.Read(make([]byte, 1))
	if n != 0 || !(errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
		c.t.Fatalf("read = %d, %v; want the connection closed", n, err)
	}
}

// roundTripApiVersions checks the connection still works.
func (c *rawClient) roundTripApiVersions(reg *Registry) {
	c.t.Helper()
	c.write(c.frame(kmsg.NewPtrApiVersionsRequest(), 3))
	resp := kmsg.NewPtrApiVersionsResponse()
	if corr := c.read(resp, 3); corr != c.corr {
		c.t.Fatalf("correlation id = %d, want %d", corr, c.corr)
	}
	if resp.ErrorCode != 0 || len(resp.ApiKeys) != len(reg.Versions()) {
		c.t.Fatalf("ApiVersions = %+v", resp)
	}
}

func metadataReq(topic string) *kmsg.MetadataRequest {
	r := kmsg.NewPtrMetadataRequest()
	r.Topics = []kmsg.MetadataRequestTopic{{Topic: kmsg.StringPtr(topic)}}
	return r
}

func TestPipelinedResponsesLeaveInRequestOrder(t *testing.T) {
	b := newTestBroker()
	s := startServer(t, b.reg, 0)
	c := dial(t, s)

	// One write: the server sees all four at once. The two held ones are answered by the
	// release request, newest first, so respond runs in the order 2, 1, 4 while 3 (ApiVersions)
	// was answered before either.
	var batch []byte
	batch = append(batch, c.frame(metadataReq("hold"), 12)...)
	batch = append(batch, c.frame(metadataReq("hold"), 4)...) // non-flexible header
	batch = append(batch, c.frame(kmsg.NewPtrApiVersionsRequest(), 3)...)
	batch = append(batch, c.frame(metadataReq("release"), 12)...)
	c.write(batch)

	for i, want := range []struct {
		version int16
		topic   string
	}{{12, "hold"}, {4, "hold"}, {3, ""}, {12, "release"}} {
		corr := int32(i + 1)
		if want.version == 3 {
			if got := c.read(kmsg.NewPtrApiVersionsResponse(), 3); got != corr {
				t.Fatalf("response %d has correlation id %d", corr, got)
			}
			continue
		}
		resp := kmsg.NewPtrMetadataResponse()
		if got := c.read(resp, want.version); got != corr {
			t.Fatalf("response %d has correlation id %d", corr, got)
		}
		if len(resp.Topics) != 1 || *resp.Topics[0].Topic != want.topic {
			t.Fatalf("response %d = %+v", corr, resp.Topics)
		}
	}
}

// TestBurstOfProducesAnsweredInOrder: produce requests that arrive together are answered
// together once the burst is handled (setCorked), in request order with the requests around
// them, and no answer held for a burst waits for a later request: not for a produce that
// responds later, nor for a request whose handler waits on the request goroutine.
func TestBurstOfProducesAnsweredInOrder(t *testing.T) {
	b := newTestBroker()
	s := startServer(t, b.reg, 0)
	c, c2 := dial(t, s), dial(t, s)

	readProduce := func(c *rawClient, corr int32, topic string) {
		t.Helper()
		resp := kmsg.NewPtrProduceResponse()
		if got := c.read(resp, 9); got != corr {
			t.Fatalf("response %d has correlation id %d", corr, got)
		}
		if len(resp.Topics) != 1 || resp.Topics[0].Topic != topic {
			t.Fatalf("response %d = %+v, want topic %q", corr, resp.Topics, topic)
		}
	}
	readMetadata := func(c *rawClient, corr int32, topic string) {
		t.Helper()
		resp := kmsg.NewPtrMetadataResponse()
		if got := c.read(resp, 12); got != corr {
			t.Fatalf("response %d has correlation id %d", corr, got)
		}
		if len(resp.Topics) != 1 || *resp.Topics[0].Topic != topic {
			t.Fatalf("response %d = %+v, want topic %q", corr, resp.Topics, topic)
		}
	}
	waitHandled := func(n int32) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for b.gateSeen.Load() < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d gated requests handled, want %d", b.gateSeen.Load(), n)
			}
			time.Sleep(time.Millisecond)
		}
	}

	// Produces answered at once with a metadata request among them: all, in order.
	var batch []byte
	for i := 0; i < 3; i++ {
		batch = append(batch, c.frame(produceReq(fmt.Sprintf("p%d", i)), 9)...)
	}
	batch = append(batch, c.frame(metadataReq("m"), 12)...)
	for i := 3; i < 5; i++ {
		batch = append(batch, c.frame(produceReq(fmt.Sprintf("p%d", i)), 9)...)
	}
	c.write(batch)
	for i := int32(1); i <= 3; i++ {
		readProduce(c, i, fmt.Sprintf("p%d", i-1))
	}
	readMetadata(c, 4, "m")
	for i := int32(5); i <= 6; i++ {
		readProduce(c, i, fmt.Sprintf("p%d", i-2))
	}

	// A produce answered at once, then one answered only once the gate opens: the first
	// answer comes while the gate is shut.
	c.write(append(c.frame(produceReq("p5"), 9), c.frame(produceReq("gate-p"), 9)...))
	readProduce(c, 7, "p5")

	// On another connection, a produce answered at once, then a request whose handler waits
	// on the request goroutine: the produce's answer comes while it waits.
	c2.write(append(c2.frame(produceReq("q"), 9), c2.frame(metadataReq("block"), 12)...))
	readProduce(c2, 1, "q")
	waitHandled(2)

	close(b.gate)
	readProduce(c, 8, "gate-p")
	readMetadata(c2, 2, "block")
}

// bigTopics makes a "big" metadata answer about 64 KiB.
const bigTopics = 2000

// TestResponsesToASlowReaderStayInOrder: answers are written straight to the socket while it
// takes them; once it is full, the rest and every later answer go through the event loop,
// behind what it holds. A client that reads nothing until every request was answered (about
// 25 MiB, more than the socket buffers) then gets every answer whole and in order.
func TestResponsesToASlowReaderStayInOrder(t *testing.T) {
	b := newTestBroker()
	s := startServer(t, b.reg, 0)
	c := dial(t, s)
	_ = c.conn.SetDeadline(time.Now().Add(60 * time.Second))

	const n = 400
	var batch []byte
	for i := 0; i < n; i++ {
		v := int16(9)
		if i%3 == 0 {
			v = 4 // answers of both header kinds
		}
		batch = append(batch, c.frame(metadataReq("big"), v)...)
	}
	c.write(batch)
	deadline := time.Now().Add(30 * time.Second)
	for b.bigSeen.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d requests answered while the client reads nothing", b.bigSeen.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for i := 0; i < n; i++ {
		v := int16(9)
		if i%3 == 0 {
			v = 4
		}
		resp := kmsg.NewPtrMetadataResponse()
		if corr := c.read(resp, v); corr != int32(i+1) {
			t.Fatalf("response %d has correlation id %d", i+1, corr)
		}
		if len(resp.Topics) != bigTopics || *resp.Topics[bigTopics-1].Topic != fmt.Sprintf("big-%08d", bigTopics-1) {
			t.Fatalf("response %d: %d topics", i+1, len(resp.Topics))
		}
	}
	c.roundTripApiVersions(b.reg)
}

func TestInFlightBoundPausesReading(t *testing.T) {
	b := newTestBroker()
	s := startServer(t, b.reg, 0)
	c := dial(t, s)

	const n = maxInFlight + 72
	var batch []byte
	for i := 0; i < n; i++ {
		batch = append(batch, c.frame(metadataReq("gate"), 9)...)
	}
	go c.conn.Write(batch) // may not all fit in the socket buffers while the server pauses

	deadline := time.Now().Add(5 * time.Second)
	for b.gateSeen.Load() < maxInFlight && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // give a broken bound the chance to show
	if got := b.gateSeen.Load(); got != maxInFlight {
		t.Fatalf("handlers started = %d, want exactly %d while none has answered", got, maxInFlight)
	}
	close(b.gate)
	for i := 1; i <= n; i++ {
		if corr := c.read(kmsg.NewPtrMetadataResponse(), 9); corr != int32(i) {
			t.Fatalf("response %d has correlation id %d", i, corr)
		}
	}
}

// TestByteBoundPausesReading pipelines ~1 MiB requests whose handlers wait: the connection takes
// only as many as fit minConnBytes, then stops reading until answers free room, and every
// request is answered in order.
func TestByteBoundPausesReading(t *testing.T) {
	b := newTestBroker()
	s := startServer(t, b.reg, 4<<20)
	c := dial(t, s)
	// Moving a dozen 1 MiB frames each way takes 6-8 s under the race detector: dial's 10 s
	// for the whole connection made the test fail on a busy machine.
	_ = c.conn.SetDeadline(time.Now().Add(60 * time.Second))

	big := "gate" + strings.Repeat("x", 1<<20)
	frame := c.frame(metadataReq(big), 9)
	size := len(frame) - 4
	admitted := int(minConnBytes / int64(size))
	n := admitted + 8
	batch := frame
	for i := 1; i < n; i++ {
		batch = append(batch, c.frame(metadataReq(big), 9)...)
	}
	go c.conn.Write(batch) // cannot all fit in the socket buffers while the server pauses

	deadline := time.Now().Add(10 * time.Second)
	for int(b.gateSeen.Load()) < admitted && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // give a broken bound the chance to show
	if got := int(b.gateSeen.Load()); got != admitted {
		t.Fatalf("handlers started = %d, want exactly %d (%d-byte frames within %d bytes) while none has answered",
			got, admitted, size, minConnBytes)
	}
	close(b.gate)
	for i := 1; i <= n; i++ {
		if corr := c.read(kmsg.NewPtrMetadataResponse(), 9); corr != int32(i) {
			t.Fatalf("response %d has correlation id %d", i, corr)
		}
	}
}

func TestOversizedFrameClosesOnlyThatConnection(t *testing.T) {
	b := newTestBroker()
	s := startServer(t, b.reg, 1024)
	good := dial(t, s)
	good.roundTripApiVersions(b.reg)

	for _, prefix := range [][]byte{{0, 0, 4, 1}, {0xff, 0xff, 0xff, 0xfe}} {
		bad := dial(t, s)
		bad.write(prefix)
		bad.expectClosed()
	}
	// Exactly the maximum is fine.
	at := dial(t, s)
	topicLen := 900
	frame := at.frame(metadataReq(strings.Repeat("x", topicLen)), 9)
	topicLen += 1024 - (len(frame) - 4)
	at.corr = 0
	frame = at.frame(metadataReq(strings.Repeat("x", topicLen)), 9)
	if size := len(frame) - 4; size != 1024 {
		t.Fatalf("test frame is %d bytes", size)
	}
	at.write(frame)
	at.read(kmsg.NewPtrMetadataResponse(), 9)

	good.roundTripApiVersions(b.reg)
}

func TestGarbageClosesOnlyThatConnection(t *testing.T) {
	b := newTestBroker()
	s := startServer(t, b.reg, 0)
	good := dial(t, s)
	good.roundTripApiVersions(b.reg)

	for name, frame := range map[string][]byte{
		"body":             {0, 0, 0, 14, 0, 3, 0, 1, 0, 0, 0, 1, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff},
		"truncated header": {0, 0, 0, 3, 0, 3, 0},
		"empty frame":      {0, 0, 0, 0},
		"unknown key":      {0, 0, 0, 10, 0x7f, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff},
		"client id":        {0, 0, 0, 10, 0, 3, 0, 1, 0, 0, 0, 1, 0x7f, 0xff},
	} {
		t.Run(name, func(t *testing.T) {
			bad := dial(t, s)
			bad.write(frame)
			bad.expectClosed()
		})
	}
	good.roundTripApiVersions(b.reg)
}

func TestUnsupportedVersionAnswersError35(t *testing.T) {
	b := newTestBroker()
	s := startServer(t, b.reg, 0)
	c := dial(t, s)

	// A handled key at a version outside the registry's range.
	c.write(c.frame(kmsg.NewPtrInitProducerIDRequest(), 3))
	ipid := kmsg.NewPtrInitProducerIDResponse()
	if corr := c.read(ipid, 3); corr != c.corr || ipid.ErrorCode != kerr.UnsupportedVersion.Code {
		t.Fatalf("InitProducerID v3: corr %d, error %d", corr, ipid.ErrorCode)
	}
	// A key kmsg knows and the registry does not handle.
	c.write(c.frame(kmsg.NewPtrFindCoordinatorRequest(), 2))
	fc := kmsg.NewPtrFindCoordinatorResponse()
	if corr := c.read(fc, 2); corr != c.corr || fc.ErrorCode != kerr.UnsupportedVersion.Code {
		t.Fatalf("FindCoordinator v2: corr %d, error %d", corr, fc.ErrorCode)
	}
	// Below the handled range, for a response without a top-level error code: still answered.
	c.write(c.frame(metadataReq("x"), 0))
	if corr := c.read(kmsg.NewPtrMetadataResponse(), 0); corr != c.corr {
		t.Fatalf("Metadata v0: corr %d", corr)
	}
	c.roundTripApiVersions(b.reg)

	// Beyond what kmsg can encode a response for: the connection is closed.
	c.write([]byte{0, 0, 0, 11, 0, 22, 0x7f, 0, 0, 0, 0, 9, 0xff, 0xff, 0})
	c.expectClosed()
}

func TestApiVersionsTooNewGetsV0WithList(t *testing.T) {
	b := newTestBroker()
	s := startServer(t, b.reg, 0)
	c := dial(t, s)

	req := kmsg.NewPtrApiVersionsRequest()
	req.ClientSoftwareName = "test"
	req.ClientSoftwareVersion = "1"
	// Version 99 is "flexible" as far as kmsg can tell, so its header and body are written in
	// the v3 layout, as a future client would.
	req.SetVersion(99)
	c.corr++
	c.write(appendRequest(nil, c.corr, nil, req))

	resp := kmsg.NewPtrApiVersionsResponse()
	if corr := c.read(resp, 0); corr != c.corr {
		t.Fatalf("correlation id %d", corr)
	}
	if resp.ErrorCode != kerr.UnsupportedVersion.Code {
		t.Fatalf("error code %d, want 35", resp.ErrorCode)
	}
	want := b.reg.Versions()
	if len(resp.ApiKeys) != len(want) {
		t.Fatalf("api keys %+v, want %+v", resp.ApiKeys, want)
	}
	for i := range want {
		g := resp.ApiKeys[i]
		if g.ApiKey != want[i].ApiKey || g.MinVersion != want[i].MinVersion || g.MaxVersion != want[i].MaxVersion {
			t.Fatalf("api keys %+v, want %+v", resp.ApiKeys, want)
		}
	}
	c.roundTripApiVersions(b.reg) // the KIP-511 retry
}

func TestHandlerPanicClosesOnlyThatConnection(t *testing.T) {
	b := newTestBroker()
	s := startServer(t, b.reg, 0)
	good := dial(t, s)
	bad := dial(t, s)
	bad.write(bad.frame(kmsg.NewPtrSASLHandshakeRequest(), 1))
	bad.expectClosed()
	good.roundTripApiVersions(b.reg)
}

func TestFranzGoClient(t *testing.T) {
	b := newTestBroker()
	s := startServer(t, b.reg, 0)
	cl, err := kgo.NewClient(kgo.SeedBrokers(s.Addrs()[0]), kgo.RetryTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// franz-go opens the connection with its newest ApiVersions (v4 or later), which the
	// registry does not handle: this only succeeds through the KIP-511 downgrade.
	kresp, err := cl.Request(ctx, kmsg.NewPtrApiVersionsRequest())
	if err != nil {
		t.Fatal(err)
	}
	resp := kresp.(*kmsg.ApiVersionsResponse)
	if resp.ErrorCode != 0 || len(resp.ApiKeys) != len(b.reg.Versions()) {
		t.Fatalf("ApiVersions = %+v", resp)
	}
}

func TestStartErrors(t *testing.T) {
	b := newTestBroker()
	s := startServer(t, b.reg, 0)
	again := NewServer(ServerConfig{Listen: []string{s.Addrs()[0]}, Logger: testLogger(t)}, b.reg)
	err := again.Start()
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("second server on %s: err = %v", s.Addrs()[0], err)
	}
	_ = again.Stop(context.Background())

	for _, listen := range [][]string{{"no-port"}, {"127.0.0.1:0", "127.0.0.1:0"}, nil} {
		if err := NewServer(ServerConfig{Listen: listen}, b.reg).Start(); err == nil {
			t.Fatalf("listen %q accepted", listen)
		}
	}
}

func TestStopClosesConnections(t *testing.T) {
	b := newTestBroker()
	// A second address with a fixed port: gnet needs the configured addresses to differ.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	second := l.Addr().String()
	l.Close()
	s := NewServer(ServerConfig{Listen: []string{"127.0.0.1:0", second}, Logger: testLogger(t)}, b.reg)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	addrs := s.Addrs()
	if len(addrs) != 2 || addrs[0] == addrs[1] || addrs[1] != second {
		t.Fatalf("addrs = %v", addrs)
	}
	c := dial(t, s)
	c.roundTripApiVersions(b.reg)
	c.write(c.frame(metadataReq("hold"), 9)) // an answer that will never come
	time.Sleep(20 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	c.expectClosed()
	if _, err := net.DialTimeout("tcp", addrs[1], time.Second); err == nil {
		t.Fatal("still accepting after Stop")
	}
	b.mu.Lock()
	held := b.held
	b.mu.Unlock()
	for _, respond := range held {
		respond() // after Stop: must be dropped quietly
	}
}

// TestDrainAnswersInFlightAndTakesNoMore: Drain waits for a request being handled and lets its
// answer out, reads no request sent after it began, and Stop then closes the connection.
func TestDrainAnswersInFlightAndTakesNoMore(t *testing.T) {
	b := newTestBroker()
	s := NewServer(ServerConfig{Listen: []string{"127.0.0.1:0"}, Logger: testLogger(t)}, b.reg)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	c := dial(t, s)
	c.write(c.frame(metadataReq("gate-drain"), 9))
	inFlight := c.corr
	for b.gateSeen.Load() == 0 {
		time.Sleep(time.Millisecond) // until the handler holds the request
	}
	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		drained <- s.Drain(ctx)
	}()
	for !s.draining.Load() {
		time.Sleep(time.Millisecond)
	}
	c.write(c.frame(kmsg.NewPtrApiVersionsRequest(), 3)) // sent while draining: never read
	select {
	case err := <-drained:
		t.Fatalf("Drain returned (%v) while a request was in flight", err)
	default:
	}
	close(b.gate)
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
	resp := kmsg.NewPtrMetadataResponse()
	if corr := c.read(resp, 9); corr != inFlight || len(resp.Topics) != 1 {
		t.Fatalf("answer %d %v, want the in-flight request's (%d)", corr, resp.Topics, inFlight)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	c.expectClosed()
}
