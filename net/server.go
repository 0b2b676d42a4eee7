package kafkanet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// ServerConfig configures the Kafka listener.
type ServerConfig struct {
	Listen          []string // host:port; port 0 picks a free port, see Server.Addrs
	MaxRequestBytes int32    // socket.request.max.bytes; 0 means DefaultMaxRequestBytes
	// QueuedMaxBytes bounds the request bytes all connections together hold, from a frame's
	// size prefix to its answer (queued.max.request.bytes); <= 0: no bound. See conn.go.
	QueuedMaxBytes int64
	// MaxConnections bounds the client connections open at once (max.connections); one more
	// is closed as soon as it is accepted, with a log line. 0: no limit.
	MaxConnections int
	Multicore      bool // one gnet event loop per CPU instead of one in total
	Logger         *slog.Logger
	// OnRequest, when set, is told how long each request took from the start of its handling
	// to its response being ready (metrics). It runs on whatever goroutine responds and must
	// not block.
	OnRequest func(key int16, took time.Duration)
}

// minConnBytes is the least a connection may have pending, whatever socket.request.max.bytes
// says, so a small request limit does not stop clients from pipelining their usual in-flight
// requests (5 × max.request.size, typically 1 MiB each).
const minConnBytes = 64 << 20

// Server accepts Kafka clients on one gnet engine that owns every listen address, and hands
// their requests to the handlers of a Registry.
type Server struct {
	cfg             ServerConfig
	reg             *Registry
	log             *slog.Logger
	maxRequestBytes int32
	// connBytes bounds the request bytes one connection may have pending (received, not yet
	// answered) and, separately, unread in gnet's buffer while it waits; see conn.go.
	connBytes int64

	conns      sync.WaitGroup // one per connection's request goroutine
	nextConnID atomic.Uint64  // the last connection id handed out
	// live holds the open connections (id → *connection) and draining stops them reading new
	// requests: Drain, at a controlled shutdown.
	live     sync.Map
	draining atomic.Bool

	open          atomic.Int64  // client connections accepted and not yet closed (conn_limit.go)
	probation     atomic.Int64  // connections past MaxConnections awaiting their first request
	refused       atomic.Uint64 // connections closed at once for MaxConnections
	lastRefuseLog atomic.Int64  // unix nanoseconds of the last refusal logged
	mem           requestMemory // the broker-wide bound on request bytes held

	mu      sync.Mutex
	started bool
	eng     gnet.Engine
	addrs   []string
	runDone chan struct{} // closed when gnet.Rotate has returned
	runErr  error         // what it returned; read after runDone
}

// NewServer returns a server for reg; Start makes it listen.
func NewServer(cfg ServerConfig, reg *Registry) *Server {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	maxBytes := cfg.MaxRequestBytes
	if maxBytes <= 0 {
		maxBytes = DefaultMaxRequestBytes
	}
	s := &Server{cfg: cfg, reg: reg, log: log.With("component", "kafkanet"), maxRequestBytes: maxBytes,
		connBytes: max(int64(maxBytes), minConnBytes)}
	s.mem.max = cfg.QueuedMaxBytes
	return s
}

// ConnStats returns the open connections, the connections refused for MaxConnections, the
// request bytes held and how often a connection stopped reading for QueuedMaxBytes (metrics).
func (s *Server) ConnStats() (open int, refused uint64, queuedBytes int64, memoryWaits uint64) {
	return int(s.open.Load()), s.refused.Load(), s.mem.used.Load(), s.mem.waits.Load()
}

// Start binds every listen address and starts the event loops. It returns once the server
// is accepting connections, or with the error that kept it from doing so (address in use,
// bad address). A Server starts at most once.
func (s *Server) Start() error {
	if len(s.cfg.Listen) == 0 {
		return errors.New("kafkanet: no listen address configured")
	}
	protoAddrs := make([]string, len(s.cfg.Listen))
	seen := make(map[string]bool, len(s.cfg.Listen))
	for i, a := range s.cfg.Listen {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("kafkanet: listen address %q: %w", a, err)
		}
		// gnet identifies listeners by their configured address, so Addrs could not tell two
		// equal entries apart (and without port 0 the second could not bind anyway).
		if seen[a] {
			return fmt.Errorf("kafkanet: listen address %q given twice", a)
		}
		seen[a] = true
		protoAddrs[i] = "tcp://" + a
	}

	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("kafkanet: server already started")
	}
	s.started = true
	s.runDone = make(chan struct{})
	s.mu.Unlock()

	h := &eventHandler{s: s, listen: s.cfg.Listen, booted: make(chan struct{})}
	go func() {
		// One engine for all addresses. SO_REUSEPORT stays off: with it gnet binds one socket
		// per event loop and address, and with port 0 each of those would get its own port.
		err := gnet.Rotate(h, protoAddrs,
			gnet.WithMulticore(s.cfg.Multicore),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			// A restarted broker must rebind its port while connections of the previous
			// process sit in TIME_WAIT.
			gnet.WithReuseAddr(true),
			gnet.WithLogger(gnetLogger{s.log}),
		)
		select {
		case <-h.booted:
			// Start has returned already; a late failure (event loops failing to start, or
			// dying) would otherwise go unnoticed.
			if err != nil {
				s.log.Error("gnet engine stopped with an error", "err", err)
			}
		default:
		}
		s.runErr = err
		close(s.runDone)
	}()

	select {
	case <-h.booted:
		if h.bootErr != nil {
			<-s.runDone
			return h.bootErr
		}
		s.log.Info("listening", "addrs", s.Addrs())
		return nil
	case <-s.runDone:
		if s.runErr == nil {
			return errors.New("kafkanet: gnet engine stopped before it was listening")
		}
		return fmt.Errorf("kafkanet: listen on %v: %w", s.cfg.Listen, s.runErr)
	}
}

// Addrs returns the bound listen addresses (host:port) in the order of ServerConfig.Listen,
// with port 0 resolved to the port the kernel picked; nil before Start succeeded.
func (s *Server) Addrs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.addrs...)
}

// Drain stops every connection from taking new requests (their bytes stay unread; the client
// sees the connection close at Stop and retries elsewhere) and waits until the requests already
// taken have been answered, or ctx ends: a controlled shutdown finishes what it accepted
// instead of dropping it. Stop follows.
func (s *Server) Drain(ctx context.Context) error {
	s.draining.Store(true)
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for {
		busy := 0
		s.live.Range(func(_, v any) bool {
			if v.(*connection).inflight.Load() > 0 {
				busy++
			}
			return true
		})
		if busy == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kafkanet: %d connections still have requests in flight: %w", busy, ctx.Err())
		case <-t.C:
		}
	}
}

// Stop stops accepting, closes every connection (responses still being computed are
// dropped, as a client would see after a broker crash), and waits until the event loops and
// all request goroutines are gone or ctx ends. A handler that blocks keeps its goroutine, and
// Stop waiting, until ctx ends.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	started, eng, runDone := s.started, s.eng, s.runDone
	s.mu.Unlock()
	if !started || runDone == nil {
		return nil
	}
	// Engine.Stop polls for the end every 500ms; with an already cancelled context it only
	// signals the shutdown, and runDone tells exactly when gnet is through.
	signal, cancel := context.WithCancel(context.Background())
	cancel()
	_ = eng.Stop(signal)
	select {
	case <-runDone:
	case <-ctx.Done():
		return fmt.Errorf("kafkanet: stopping event loops: %w", ctx.Err())
	}
	// Every connection has seen onClose now, so no request goroutine starts again.
	idle := make(chan struct{})
	go func() { s.conns.Wait(); close(idle) }()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kafkanet: waiting for handlers: %w", ctx.Err())
	}
}

// eventHandler holds the gnet callbacks, so they are not part of Server's API.
type eventHandler struct {
	gnet.BuiltinEventEngine
	s       *Server
	listen  []string
	booted  chan struct{}
	bootErr error
}

// OnBoot runs once the listeners are bound and before any connection is accepted: the moment
// to learn the ports the kernel chose.
func (h *eventHandler) OnBoot(eng gnet.Engine) gnet.Action {
	defer close(h.booted)
	addrs := make([]string, 0, len(h.listen))
	for _, a := range h.listen {
		bound, err := boundAddr(eng, a)
		if err != nil {
			h.bootErr = fmt.Errorf("kafkanet: resolving bound address of %s: %w", a, err)
			return gnet.Shutdown
		}
		addrs = append(addrs, bound)
	}
	h.s.mu.Lock()
	h.s.eng, h.s.addrs = eng, addrs
	h.s.mu.Unlock()
	return gnet.None
}

// boundAddr asks the kernel for the address of the listener gnet made for addr; gnet keeps the
// configured address only, so port 0 would otherwise stay unknown.
func boundAddr(eng gnet.Engine, addr string) (string, error) {
	fd, err := eng.DupListener("tcp", addr)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return "", err
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return net.JoinHostPort(net.IP(sa.Addr[:]).String(), strconv.Itoa(sa.Port)), nil
	case *unix.SockaddrInet6:
		return net.JoinHostPort(net.IP(sa.Addr[:]).String(), strconv.Itoa(sa.Port)), nil
	default:
		return "", fmt.Errorf("unexpected socket address %T", sa)
	}
}

func (h *eventHandler) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	place := connCounted
	if limit := h.s.cfg.MaxConnections; limit > 0 && h.s.open.Load() >= int64(limit) {
		// Perhaps a broker's (conn_limit.go): its first request decides, unless too many wait.
		if h.s.probation.Add(1) > probationMax {
			h.s.probation.Add(-1)
			remote := "unknown"
			if a := gc.RemoteAddr(); a != nil {
				remote = a.String()
			}
			h.s.refuseConn(remote, limit)
			return nil, gnet.Close
		}
		place = connOnProbation
	} else {
		h.s.open.Add(1)
	}
	c := newConnection(h.s, gc)
	c.place.Store(place)
	gc.SetContext(c)
	h.s.conns.Add(1)
	h.s.live.Store(c.id, c)
	go c.serve()
	c.log.Debug("connection opened")
	return nil, gnet.None
}

func (h *eventHandler) OnTraffic(gc gnet.Conn) gnet.Action {
	c, ok := gc.Context().(*connection)
	if !ok {
		return gnet.Close
	}
	return c.onTraffic()
}

func (h *eventHandler) OnClose(gc gnet.Conn, err error) gnet.Action {
	if c, ok := gc.Context().(*connection); ok {
		h.s.live.Delete(c.id)
		c.onClose(err)
		c.forgetPlace()
	}
	return gnet.None
}

// refuseConn counts a connection closed for MaxConnections and logs it, at most once a second
// (a client retrying in a loop would otherwise flood the log); the line carries the count.
// Kafka's acceptor stops accepting instead; gnet cannot, and a closed connection tells the
// client at once rather than after its connect timeout.
func (s *Server) refuseConn(remote string, limit int) {
	n := s.refused.Add(1)
	now := time.Now().UnixNano()
	last := s.lastRefuseLog.Load()
	if now-last < int64(time.Second) || !s.lastRefuseLog.CompareAndSwap(last, now) {
		return
	}
	s.log.Warn("refusing connection: max.connections are open; closing it", "remote", remote,
		"max_connections", limit, "refused_total", n)
}

// gnetLogger sends gnet's own log lines to the server's slog logger. Its Info lines (engine
// launch banners) are demoted to Debug: the server logs its own "listening" line.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(format string, args ...any) { g.l.Debug(fmt.Sprintf(format, args...)) }
func (g gnetLogger) Infof(format string, args ...any)  { g.l.Debug(fmt.Sprintf(format, args...)) }
func (g gnetLogger) Warnf(format string, args ...any)  { g.l.Warn(fmt.Sprintf(format, args...)) }
func (g gnetLogger) Errorf(format string, args ...any) { g.l.Error(fmt.Sprintf(format, args...)) }
func (g gnetLogger) Fatalf(format string, args ...any) { g.l.Error(fmt.Sprintf(format, args...)) }
