package cluster

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Defaults for BrokerConfig's timeouts.
const (
	DefaultReadyTimeout = 30 * time.Second // from start to answering ApiVersions
	DefaultStopTimeout  = 30 * time.Second // from SIGTERM to exit
)

// BrokerConfig says how to run one `ringtail serve` process.
type BrokerConfig struct {
	// ID is the broker's number in its cluster (1…N): in its name, in
	// Peers. A lone broker may leave it 0.
	ID int
	// Bin is the broker binary; empty: Binary().
	Bin string
	// Host is the loopback address to listen on; empty: 127.0.0.1.
	Host string
	// Addr is the Kafka listen address (host:port); empty: Host and a port
	// that was free, kept across restarts.
	Addr string
	// DataDir is the data directory (required), kept across restarts.
	DataDir string
	// Args are further `serve` flags, after --listen and --data-dir.
	Args []string
	// Env is added to the process's environment (KEY=VALUE).
	Env []string
	// LogFile, when set, also receives the broker's output.
	LogFile string
	// Wrap, when set, is a command the broker runs under: Wrap[0] is started with the rest of
	// Wrap, then the binary and its arguments (Network.Exec: `ip netns exec NAME`). The
	// wrapper must exec the broker in place, so that signals reach the broker itself.
	Wrap []string
	// ExtraAddrs are further addresses reserved for the broker, by name
	// ("raft", "replication"): a Cluster fills them from its Ports.
	ExtraAddrs map[string]string
	// OnStart, when set, is called with the process id each time the process
	// has been started, before it is ready: a caller that must not leave the
	// process behind when it dies itself records the id (perf/'s pid file).
	OnStart func(pid int)

	ReadyTimeout time.Duration // default DefaultReadyTimeout
	StopTimeout  time.Duration // default DefaultStopTimeout
}

// Broker is one broker process with a fixed address and data directory,
// which it keeps across Stop, Kill and Start. Safe for concurrent use once
// started.
type Broker struct {
	cfg      BrokerConfig
	autoAddr bool     // the address was picked here, so it may be picked again until the first ready start
	args     []string // extra serve flags: cfg.Args, then a cluster's per-broker ones
	proc     *Process // nil until the first start
	ready    bool     // started and answered once: the address is fixed for good
}

// NewBroker checks cfg and picks the address; it starts nothing.
func NewBroker(cfg BrokerConfig) (*Broker, error) {
	b, err := newBroker(cfg)
	if err != nil {
		return nil, err
	}
	if b.cfg.Addr == "" {
		addrs, err := FreeAddrs(b.cfg.Host, 1)
		if err != nil {
			return nil, err
		}
		b.cfg.Addr, b.autoAddr = addrs[0], true
	}
	return b, nil
}

// newBroker is NewBroker without picking an address.
func newBroker(cfg BrokerConfig) (*Broker, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("cluster: BrokerConfig.DataDir is required")
	}
	if cfg.Bin == "" {
		path, err := Binary()
		if err != nil {
			return nil, err
		}
		cfg.Bin = path
	}
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = DefaultReadyTimeout
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = DefaultStopTimeout
	}
	return &Broker{cfg: cfg, args: cfg.Args}, nil
}

// StartBroker is NewBroker and Start.
func StartBroker(ctx context.Context, cfg BrokerConfig) (*Broker, error) {
	b, err := NewBroker(cfg)
	if err != nil {
		return nil, err
	}
	if err := b.Start(ctx); err != nil {
		b.Kill()
		return nil, err
	}
	return b, nil
}

// ID is the broker's number in its cluster (0 for a lone broker).
func (b *Broker) ID() int { return b.cfg.ID }

// Addr is the Kafka listen address, host:port.
func (b *Broker) Addr() string { return b.cfg.Addr }

// ExtraAddr is the address reserved under name (see ClusterConfig.Ports).
func (b *Broker) ExtraAddr(name string) string { return b.cfg.ExtraAddrs[name] }

// DataDir is the broker's data directory.
func (b *Broker) DataDir() string { return b.cfg.DataDir }

// Name says which broker this is in messages.
func (b *Broker) Name() string {
	if b.cfg.ID != 0 {
		return fmt.Sprintf("broker %d (%s)", b.cfg.ID, b.cfg.Addr)
	}
	return "broker " + b.cfg.Addr
}

// Process is the broker's process (nil before the first start), for what
// Broker does not wrap: signals, exit status, output since an offset.
func (b *Broker) Process() *Process { return b.proc }

// command is the executable and its arguments: the broker's, under Wrap when set.
func (b *Broker) command() (path string, args []string) {
	args = append([]string{"serve", "--listen", b.cfg.Addr, "--data-dir", b.cfg.DataDir}, b.args...)
	if len(b.cfg.Wrap) == 0 {
		return b.cfg.Bin, args
	}
	return b.cfg.Wrap[0], append(append(append([]string(nil), b.cfg.Wrap[1:]...), b.cfg.Bin), args...)
}

// launch starts the process without waiting for it to answer.
func (b *Broker) launch() error {
	path, args := b.command()
	if b.proc == nil {
		p, err := StartProcess(ProcessConfig{Name: b.Name(), Path: path, Args: args, Env: b.cfg.Env, LogFile: b.cfg.LogFile})
		if err != nil {
			return err
		}
		b.proc = p
		b.started()
		return nil
	}
	// The command line may have changed: an address picked again after a
	// collision on the first start.
	b.proc.setCommand(b.Name(), args)
	if err := b.proc.Restart(); err != nil {
		return err
	}
	b.started()
	return nil
}

// started tells OnStart the id of the process just started.
func (b *Broker) started() {
	if b.cfg.OnStart != nil {
		b.cfg.OnStart(b.proc.Pid())
	}
}

// WaitReady waits, up to ReadyTimeout, until the broker accepts a TCP
// connection and answers ApiVersions on it. It fails at once, with the end
// of the log, if the process exits meanwhile.
func (b *Broker) WaitReady(ctx context.Context) error {
	if b.proc == nil {
		return b.errNotStarted()
	}
	ctx, cancel := context.WithTimeout(ctx, b.cfg.ReadyTimeout)
	defer cancel()
	if err := b.proc.WaitFor(ctx, func(ctx context.Context) error { return PingApiVersions(ctx, b.cfg.Addr) }); err != nil {
		return fmt.Errorf("cluster: %s not ready: %w", b.Name(), err)
	}
	b.ready = true
	return nil
}

// lostAddrRace reports whether the run that started at output offset from
// exited because its address was taken between FreeAddrs and the broker's
// bind (another process on the machine got the port).
func (b *Broker) lostAddrRace(from int) bool {
	if b.proc == nil || b.proc.Running() {
		return false
	}
	out, _ := b.proc.out.since(from)
	return strings.Contains(out, "address already in use")
}

// Start starts the broker process and waits until it answers (WaitReady).
// The broker must not be running. Until the broker has been ready once, an
// address picked here that another process took meanwhile is picked anew;
// after that the address never changes.
func (b *Broker) Start(ctx context.Context) error {
	if b.Running() {
		return fmt.Errorf("cluster: start %s: already running", b.Name())
	}
	for attempt := 1; ; attempt++ {
		from := 0
		if b.proc != nil {
			from = b.proc.OutputLen()
		}
		if err := b.launch(); err != nil {
			return err
		}
		err := b.WaitReady(ctx)
		if err == nil || b.ready || !b.autoAddr || attempt == 3 || !b.lostAddrRace(from) {
			return err
		}
		addrs, aerr := FreeAddrs(b.cfg.Host, 1)
		if aerr != nil {
			return errors.Join(err, aerr)
		}
		b.cfg.Addr = addrs[0]
	}
}

// Restart stops the broker (SIGTERM) if it is running and starts it again
// on the same address and data directory.
func (b *Broker) Restart(ctx context.Context) error {
	if err := b.Stop(); err != nil {
		return err
	}
	return b.Start(ctx)
}

// Running reports whether the process is alive (a paused one is).
func (b *Broker) Running() bool { return b.proc != nil && b.proc.Running() }

// Stop sends SIGTERM and waits up to StopTimeout for a clean exit (see
// Process.Stop). A broker that is not running is no error.
func (b *Broker) Stop() error {
	if b.proc == nil {
		return nil
	}
	return b.proc.Stop(b.cfg.StopTimeout)
}

// Kill sends SIGKILL and waits until the process is gone.
func (b *Broker) Kill() error {
	if b.proc == nil {
		return nil
	}
	return b.proc.Kill()
}

// errNotStarted is what the methods that need a process say before the
// first start.
func (b *Broker) errNotStarted() error { return fmt.Errorf("cluster: %s was never started", b.Name()) }

// Pause stops the process with SIGSTOP (see Process.Pause).
func (b *Broker) Pause() error {
	if b.proc == nil {
		return b.errNotStarted()
	}
	return b.proc.Pause()
}

// Resume continues a paused broker with SIGCONT.
func (b *Broker) Resume() error {
	if b.proc == nil {
		return b.errNotStarted()
	}
	return b.proc.Resume()
}

// Log is everything the broker wrote, over all its runs.
func (b *Broker) Log() string {
	if b.proc == nil {
		return ""
	}
	return b.proc.Output()
}

// LogLen is the length of Log now, for WaitLog.
func (b *Broker) LogLen() int {
	if b.proc == nil {
		return 0
	}
	return b.proc.OutputLen()
}

// LogTail is the last n bytes of Log.
func (b *Broker) LogTail(n int) string { return tail(b.Log(), n) }

// WaitLog waits until a log line written at or after offset from (0: since
// the first start; LogLen: from now) contains substr.
func (b *Broker) WaitLog(ctx context.Context, from int, substr string) error {
	if b.proc == nil {
		return b.errNotStarted()
	}
	return b.proc.WaitOutput(ctx, from, substr)
}

// Client returns a franz-go client seeded with this broker. Close it.
func (b *Broker) Client(opts ...kgo.Opt) (*kgo.Client, error) {
	return kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(b.cfg.Addr)}, opts...)...)
}

// Admin returns a kadm client over a new franz-go client seeded with this
// broker. Close it (that closes its client).
func (b *Broker) Admin(opts ...kgo.Opt) (*kadm.Client, error) {
	cl, err := b.Client(opts...)
	if err != nil {
		return nil, err
	}
	return kadm.NewClient(cl), nil
}

// PingApiVersions opens a TCP connection to addr, sends ApiVersions v0 and
// checks the answer: the broker's readiness. One try, at most 2 s; callers
// retry it with Poll.
func PingApiVersions(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 0
	const corr = 1
	if _, err := c.Write(kmsg.NewRequestFormatter(kmsg.FormatterClientID("ringtail-cluster")).AppendRequest(nil, req, corr)); err != nil {
		return err
	}
	var size [4]byte
	if _, err := io.ReadFull(c, size[:]); err != nil {
		return fmt.Errorf("ApiVersions: %w", err)
	}
	n := binary.BigEndian.Uint32(size[:])
	if n < 4 || n > 1<<20 {
		return fmt.Errorf("ApiVersions: response frame of %d bytes", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c, body); err != nil {
		return fmt.Errorf("ApiVersions: %w", err)
	}
	if got := int32(binary.BigEndian.Uint32(body)); got != corr {
		return fmt.Errorf("ApiVersions: correlation id %d, want %d", got, corr)
	}
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.Version = 0
	if err := resp.ReadFrom(body[4:]); err != nil {
		return fmt.Errorf("ApiVersions: %w", err)
	}
	if resp.ErrorCode != 0 {
		return fmt.Errorf("ApiVersions: error code %d", resp.ErrorCode)
	}
	return nil
}

// FreeAddrs returns n distinct host:port addresses on host whose ports were
// free a moment ago. All n listeners are open at once, so the n ports
// differ, and no address is handed out twice in this process: the ports of
// one call are free again once it returns, and a later call (the next
// broker's ports) would otherwise get one of them back before the first is
// bound (a cluster's broker 2 and broker 3 once shared a port). Another
// process may still take one before it is used (Start picks again when that
// happens before the first ready start).
func FreeAddrs(host string, n int) ([]string, error) {
	out := make([]string, 0, n)
	for tries := 0; len(out) < n; tries++ {
		if tries > 100*n {
			return nil, fmt.Errorf("cluster: no port on %s that was not handed out before", host)
		}
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, fmt.Errorf("cluster: finding a free port on %s: %w", host, err)
		}
		defer l.Close()
		addr := l.Addr().String()
		if _, dup := handedOut.LoadOrStore(addr, struct{}{}); dup {
			continue
		}
		out = append(out, addr)
	}
	return out, nil
}

// handedOut holds every address FreeAddrs returned in this process.
var handedOut sync.Map
