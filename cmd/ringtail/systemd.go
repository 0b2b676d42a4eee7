package main

// The service manager's side of a broker: systemd's notify protocol (READY, STATUS,
// EXTEND_TIMEOUT_USEC, WATCHDOG, STOPPING) and the watchdog that pings only while the broker's
// loops make progress. Without NOTIFY_SOCKET (not started by systemd, or Type=simple) nothing
// here runs. The decision itself (progress with work pending) is internal/health's, pure; this
// file samples and sends.

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ringtail/ringtail/broker"
	"github.com/ringtail/ringtail/internal/health"
	"github.com/ringtail/ringtail/internal/kclient"
)

// notifier sends notify-protocol messages; every method does nothing without NOTIFY_SOCKET.
type notifier struct {
	log         *slog.Logger
	on          bool
	extendEvery time.Duration // startExtendEvery; tests shorten it

	mu     sync.Mutex
	status string // the last STATUS= sent, so a repeat is not sent again
}

func newNotifier(log *slog.Logger) *notifier {
	return &notifier{log: log, on: os.Getenv("NOTIFY_SOCKET") != "", extendEvery: startExtendEvery}
}

// send sends one datagram of newline-separated assignments (READY=1, STATUS=…).
func (n *notifier) send(assignments ...string) {
	if !n.on {
		return
	}
	// The socket is dialled per message, as sd_notify does: systemd may be restarted
	// (daemon-reexec) and bind it anew.
	if _, err := daemon.SdNotify(false, strings.Join(assignments, "\n")); err != nil {
		n.log.Warn("systemd notify failed", "err", err, "message", assignments)
	}
}

// setStatus sends STATUS=s (what `systemctl status` shows) unless it was the last one sent;
// with extra assignments, they go in the same datagram.
func (n *notifier) setStatus(s string, extra ...string) {
	n.mu.Lock()
	changed := s != n.status
	n.status = s
	n.mu.Unlock()
	if changed || len(extra) > 0 {
		n.send(append(extra, "STATUS="+s)...)
	}
}

// Start-timeout extensions: while the broker opens (recovery, a metadata quorum), every
// startExtendEvery it asks systemd for startExtendBy more, so a long WAL replay is not killed
// by TimeoutStartSec, while a start that hangs outright still ends: the extension comes from
// the goroutine that waits for the start, not from the recovery itself, so systemd's bound is
// TimeoutStartSec plus however long the operator lets it run (see docs/operations.md).
const (
	startExtendEvery = 10 * time.Second
	startExtendBy    = 30 * time.Second
)

// extendStart sends STATUS with what is being waited for and EXTEND_TIMEOUT_USEC every
// extendEvery until done is closed.
func (n *notifier) extendStart(done <-chan struct{}, what string) {
	if !n.on {
		return
	}
	start := time.Now()
	n.setStatus(what)
	t := time.NewTicker(n.extendEvery)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			n.setStatus(fmt.Sprintf("%s (%v so far)", what, time.Since(start).Round(time.Second)),
				fmt.Sprintf("EXTEND_TIMEOUT_USEC=%d", startExtendBy.Microseconds()))
		}
	}
}

// loopProbe sends ApiVersions over one connection to a Kafka listener, again and again: an
// answer proves an event loop read the frame, a request goroutine handled it and the event loop
// wrote the response. Each probe holds its own connection; gnet hands new connections to its
// event loops in turn, so as many probes as loops reach every loop when no client connects at
// the same moment.
type loopProbe struct {
	addr    string
	cl      *kclient.Client
	answers atomic.Uint64
	pending atomic.Bool
}

func (p *loopProbe) sample() health.Sample {
	return health.Sample{Progress: p.answers.Load(), Pending: p.pending.Load()}
}

// run probes every interval until stop closes; a request that fails or takes longer than
// timeout stays pending (no progress) and is tried again on a new connection.
func (p *loopProbe) run(stop <-chan struct{}, interval, timeout time.Duration) {
	defer p.cl.Close()
	for {
		p.pending.Store(true)
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		_, err := p.cl.Request(ctx, &kmsg.ApiVersionsRequest{Version: 0})
		cancel()
		if err == nil {
			p.answers.Add(1)
			p.pending.Store(false)
		}
		select {
		case <-stop:
			return
		case <-time.After(interval):
		}
	}
}

// watchdog samples the broker's components and pings systemd's watchdog while none is stuck.
type watchdog struct {
	n        *notifier
	log      *slog.Logger
	interval time.Duration // WATCHDOG_USEC; 0: no watchdog (probes still gate READY)
	probes   []*loopProbe
	sources  []healthSource
	status   func() string // the STATUS line while serving
	stop     chan struct{}
	done     chan struct{}
}

// healthSource is one component the watchdog samples.
type healthSource struct {
	name   string
	sample func() health.Sample
}

// noWatchdogTick is how often probes run and STATUS is refreshed without a watchdog.
const noWatchdogTick = 5 * time.Second

// newWatchdog prepares probes of every listen address (at least one per event loop); the
// watchdog interval comes from WATCHDOG_USEC (and WATCHDOG_PID, when set, must be this process).
func newWatchdog(n *notifier, log *slog.Logger, listenAddrs []string, sources []healthSource, status func() string) (*watchdog, error) {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return nil, fmt.Errorf("systemd watchdog: %w", err)
	}
	w := &watchdog{n: n, log: log, interval: interval, sources: sources, status: status,
		stop: make(chan struct{}), done: make(chan struct{})}
	loops := max(runtime.NumCPU(), len(listenAddrs)) // gnet runs one event loop per CPU (Multicore)
	for i := range loops {
		addr := probeAddr(listenAddrs[i%len(listenAddrs)])
		w.probes = append(w.probes, &loopProbe{addr: addr, cl: kclient.New(addr, "ringtail-watchdog")})
	}
	return w, nil
}

// probeAddr is where this process reaches its own listener: a wildcard host becomes loopback.
func probeAddr(bound string) string {
	host, port, err := net.SplitHostPort(bound)
	if err != nil {
		return bound
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		if ip != nil && ip.To4() == nil {
			return net.JoinHostPort("::1", port)
		}
		return net.JoinHostPort("127.0.0.1", port)
	}
	return bound
}

// tick is how often the watchdog samples and pings: a quarter of the interval, so a ping
// comes at least every half interval (systemd's advice) with room for a slow sample.
func (w *watchdog) tick() time.Duration {
	if w.interval <= 0 {
		return noWatchdogTick
	}
	return w.interval / 4
}

// stall is how long a component may have work pending without progress before the pings
// stop: half the interval, so systemd acts within one and a half intervals of the wedge.
func (w *watchdog) stall() time.Duration {
	if w.interval <= 0 {
		return 2 * noWatchdogTick
	}
	return w.interval / 2
}

// startProbes starts the probes and waits until each has had an answer (every listener
// accepts and serves) or ctx ends.
func (w *watchdog) startProbes(ctx context.Context) error {
	for _, p := range w.probes {
		go p.run(w.stop, w.tick(), w.stall())
	}
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		waiting := ""
		for _, p := range w.probes {
			if p.answers.Load() == 0 {
				waiting = p.addr
				break
			}
		}
		if waiting == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("listener %s did not answer: %w", waiting, ctx.Err())
		case <-t.C:
		}
	}
}

// run samples every tick until Stop: STATUS while serving, WATCHDOG=1 while healthy, and a log
// line whenever health changes.
func (w *watchdog) run() {
	defer close(w.done)
	checker := health.New(w.stall())
	t := time.NewTicker(w.tick())
	defer t.Stop()
	healthy := true
	for {
		now := time.Now()
		for i, p := range w.probes {
			checker.Observe(fmt.Sprintf("event loop probe %d (%s)", i, p.addr), now, p.sample())
		}
		for _, s := range w.sources {
			checker.Observe(s.name, now, s.sample())
		}
		ok, why := checker.Healthy(now)
		switch {
		case ok && !healthy:
			w.log.Info("watchdog: every component progresses again; pinging systemd")
		case !ok && healthy:
			w.log.Error("watchdog: withholding systemd's watchdog ping", "why", why, "watchdog", w.interval)
		}
		healthy = ok
		status := w.status()
		if !ok {
			status = "stuck: " + why
		}
		if ok && w.interval > 0 {
			w.n.setStatus(status, daemon.SdNotifyWatchdog)
		} else {
			w.n.setStatus(status)
		}
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
	}
}

// Stop ends the pings and the probes (a stopping broker is bounded by TimeoutStopSec instead).
func (w *watchdog) Stop() {
	close(w.stop)
	<-w.done
}

// startWatchdog starts the probes, waits for every listener to answer, sends READY=1 and
// starts the watchdog's loop.
func startWatchdog(ctx context.Context, notify *notifier, log *slog.Logger, addrs []string, node *broker.Broker, clustered bool) (*watchdog, error) {
	storage := node.Storage()
	sources := []healthSource{{"wal writer", func() health.Sample {
		settled, pending := storage.WALProgress()
		return health.Sample{Progress: settled, Pending: pending}
	}}}
	if clustered {
		sources = append(sources, healthSource{"metadata follower", func() health.Sample {
			applies, pending := node.MetadataProgress()
			return health.Sample{Progress: applies, Pending: pending}
		}})
	}
	wd, err := newWatchdog(notify, log, addrs, sources, func() string { return serviceStatus(node, clustered) })
	if err != nil {
		return nil, err
	}
	notify.setStatus("starting: waiting for the listeners to answer")
	if err := wd.startProbes(ctx); err != nil {
		close(wd.stop)
		return nil, err
	}
	notify.send(daemon.SdNotifyReady, "STATUS="+serviceStatus(node, clustered), fmt.Sprintf("MAINPID=%d", os.Getpid()))
	go wd.run()
	log.Info("systemd notified: ready", "watchdog", wd.interval, "probes", len(wd.probes))
	return wd, nil
}

// serviceStatus is the STATUS line of a serving broker, as `systemctl status` shows it.
func serviceStatus(node *broker.Broker, clustered bool) string {
	led := node.LedPartitions()
	if !clustered {
		return fmt.Sprintf("serving: node %d leads %d partitions (single node)", node.NodeID(), led)
	}
	role := "not the controller"
	switch ctrl := node.ControllerID(); {
	case ctrl == node.NodeID():
		role = "controller"
	case ctrl < 0:
		role = "no controller known"
	default:
		role += fmt.Sprintf(" (controller: node %d)", ctrl)
	}
	return fmt.Sprintf("serving: node %d leads %d partitions; %s; raft term %d; %d under-replicated",
		node.NodeID(), led, role, node.RaftTerm(), node.UnderReplicated())
}
