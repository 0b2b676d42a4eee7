// Package e2e drives a real bin/ringtail process with real Kafka clients (franz-go) over real
// sockets on 127.0.0.1. Nothing is mocked. The binary comes from $RINGTAIL_BIN, or is built once
// from ../../cmd/ringtail.
package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// brokerBin is the broker binary every test starts.
var brokerBin string

const (
	readyTimeout = 30 * time.Second // a broker must answer ApiVersions within this after start
	stopTimeout  = 30 * time.Second // a SIGTERMed broker must exit within this
	opTimeout    = 60 * time.Second // outer deadline for one produce/consume step
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if bin := os.Getenv("RINGTAIL_BIN"); bin != "" {
		abs, err := filepath.Abs(bin)
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e: RINGTAIL_BIN: %v\n", err)
			return 2
		}
		brokerBin = abs
	} else {
		dir, err := os.MkdirTemp("", "ringtail-e2e-bin-")
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
			return 2
		}
		defer os.RemoveAll(dir)
		brokerBin = filepath.Join(dir, "ringtail")
		cmd := exec.Command("go", "build", "-o", brokerBin, "../../cmd/ringtail")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: building the broker: %v\n", err)
			return 2
		}
	}
	return m.Run()
}

// syncBuffer is a goroutine-safe bytes.Buffer for a child process's output.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Broker is one running (or stopped) broker process with a fixed address and data directory.
type Broker struct {
	t       testing.TB
	addr    string
	dataDir string
	args    []string // extra serve flags
	env     []string // extra environment
	log     syncBuffer

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
	starts  int
}

// brokerConfig collects startBroker options.
type brokerConfig struct {
	args    []string
	env     []string
	dataDir string
}

// BrokerOpt configures startBroker.
type BrokerOpt func(*brokerConfig)

// withArgs appends serve flags, e.g. withArgs("--auto-create-topics=false").
func withArgs(args ...string) BrokerOpt {
	return func(c *brokerConfig) { c.args = append(c.args, args...) }
}

// withEnv adds environment variables (KEY=VALUE) to the broker process.
func withEnv(env ...string) BrokerOpt {
	return func(c *brokerConfig) { c.env = append(c.env, env...) }
}

// withDataDir starts the broker on an existing directory instead of a fresh temporary one.
func withDataDir(dir string) BrokerOpt {
	return func(c *brokerConfig) { c.dataDir = dir }
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// startBroker starts a broker on a fresh port with a fresh data directory and waits until it
// answers ApiVersions. The process is killed when the test ends; its log is printed if the test
// failed.
func startBroker(t testing.TB, opts ...BrokerOpt) *Broker {
	t.Helper()
	var cfg brokerConfig
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.dataDir == "" {
		cfg.dataDir = t.TempDir()
	}
	b := &Broker{
		t:       t,
		addr:    net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t))),
		dataDir: cfg.dataDir,
		args:    cfg.args,
		env:     cfg.env,
	}
	t.Cleanup(func() {
		b.kill()
		if t.Failed() {
			t.Logf("broker %s log (last 64 KiB):\n%s", b.addr, tail(b.Log(), 64<<10))
		}
	})
	b.start()
	return b
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// Addr is the broker's host:port.
func (b *Broker) Addr() string { return b.addr }

// DataDir is the broker's data directory (kept across restarts).
func (b *Broker) DataDir() string { return b.dataDir }

// Log is everything the broker wrote to stdout and stderr so far, across restarts.
func (b *Broker) Log() string { return b.log.String() }

func (b *Broker) start() {
	b.t.Helper()
	b.mu.Lock()
	b.starts++
	args := append([]string{"serve", "--listen", b.addr, "--data-dir", b.dataDir}, b.args...)
	cmd := exec.Command(brokerBin, args...)
	cmd.Env = append(os.Environ(), b.env...)
	fmt.Fprintf(&b.log, "=== e2e: start #%d: %s %s\n", b.starts, brokerBin, strings.Join(args, " "))
	cmd.Stdout = &b.log
	cmd.Stderr = &b.log
	if err := cmd.Start(); err != nil {
		b.mu.Unlock()
		b.t.Fatalf("starting broker: %v", err)
	}
	exited := make(chan struct{})
	b.cmd, b.exited = cmd, exited
	b.mu.Unlock()
	go func() {
		err := cmd.Wait()
		b.mu.Lock()
		b.waitErr = err
		b.mu.Unlock()
		close(exited)
	}()
	b.waitReady()
}

// waitReady polls until a TCP connect plus ApiVersions succeeds.
func (b *Broker) waitReady() {
	b.t.Helper()
	deadline := time.Now().Add(readyTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-b.exited:
			b.t.Fatalf("broker exited during startup (%v); log:\n%s", b.waitErr, tail(b.Log(), 16<<10))
		default:
		}
		if lastErr = pingApiVersions(b.addr); lastErr == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.t.Fatalf("broker at %s not ready after %v (last error: %v); log:\n%s", b.addr, readyTimeout, lastErr, tail(b.Log(), 16<<10))
}

// pingApiVersions sends ApiVersions v0 over a fresh connection and checks the answer.
func pingApiVersions(addr string) error {
	rc, err := dialRawErr(addr)
	if err != nil {
		return err
	}
	defer rc.Close()
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 0
	resp, err := rc.roundTrip(req, 2*time.Second)
	if err != nil {
		return err
	}
	if ec := resp.(*kmsg.ApiVersionsResponse).ErrorCode; ec != 0 {
		return fmt.Errorf("ApiVersions error code %d", ec)
	}
	return nil
}

// Running reports whether the process is alive.
func (b *Broker) Running() bool {
	b.mu.Lock()
	exited := b.exited
	b.mu.Unlock()
	if exited == nil {
		return false
	}
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM and waits for the process to exit; it fails the test if it does not exit
// in time or exits with an error status.
func (b *Broker) Stop() {
	b.t.Helper()
	b.mu.Lock()
	cmd, exited := b.cmd, b.exited
	b.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(stopTimeout):
		_ = cmd.Process.Kill()
		<-exited
		b.t.Fatalf("broker did not exit within %v of SIGTERM", stopTimeout)
	}
	b.mu.Lock()
	err := b.waitErr
	b.mu.Unlock()
	if err != nil {
		b.t.Errorf("broker exited with %v after SIGTERM (want a clean exit)", err)
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (b *Broker) Kill() {
	b.t.Helper()
	b.kill()
}

func (b *Broker) kill() {
	b.mu.Lock()
	cmd, exited := b.cmd, b.exited
	b.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-exited
}

// Restart starts the broker again on the same port and data directory. The old process must
// already be stopped or killed.
func (b *Broker) Restart() {
	b.t.Helper()
	if b.Running() {
		b.t.Fatalf("Restart: broker still running")
	}
	b.start()
}

// Client returns a franz-go client seeded with this broker, closed when the test ends.
func (b *Broker) Client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	all := append([]kgo.Opt{kgo.SeedBrokers(b.addr)}, opts...)
	cl, err := kgo.NewClient(all...)
	if err != nil {
		t.Fatalf("kgo.NewClient: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// Admin returns a kadm client over a fresh franz-go client.
func (b *Broker) Admin(t testing.TB) *kadm.Client {
	t.Helper()
	return kadm.NewClient(b.Client(t))
}

// waitLog polls the broker log until it contains substr. It fails the test after the deadline.
func (b *Broker) waitLog(t testing.TB, substr string, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(b.Log(), substr) {
		if time.Now().After(deadline) {
			t.Errorf("%s: broker log has no line mentioning %q", what, substr)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ---- topic and record helpers ----

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func strp(s string) *string { return &s }

// createTopic creates a topic with the given partitions and configs and fails the test on error.
func createTopic(t testing.TB, adm *kadm.Client, topic string, partitions int32, configs map[string]*string) {
	t.Helper()
	resp, err := adm.CreateTopic(ctxTimeout(t, opTimeout), partitions, 1, configs, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create topic %q (%d partitions): %v %s", topic, partitions, err, resp.ErrMessage)
	}
}

// produceSync produces records and waits for every ack; it fails the test on any error.
func produceSync(t testing.TB, cl *kgo.Client, recs ...*kgo.Record) {
	t.Helper()
	if err := cl.ProduceSync(ctxTimeout(t, opTimeout), recs...).FirstErr(); err != nil {
		t.Fatalf("produce %d records: %v", len(recs), err)
	}
}

// endOffsets lists the end offsets of every partition of topic.
func endOffsets(t testing.TB, adm *kadm.Client, topic string) map[int32]int64 {
	t.Helper()
	lo, err := adm.ListEndOffsets(ctxTimeout(t, opTimeout), topic)
	if err != nil {
		t.Fatalf("ListEndOffsets(%s): %v", topic, err)
	}
	out := make(map[int32]int64)
	for p, o := range lo[topic] {
		if o.Err != nil {
			t.Fatalf("ListEndOffsets(%s) partition %d: %v", topic, p, o.Err)
		}
		out[p] = o.Offset
	}
	if len(out) == 0 {
		t.Fatalf("ListEndOffsets(%s): no partitions", topic)
	}
	return out
}

// consumeAll reads every record of topic from the start up to the end offsets listed when it
// begins, and returns them grouped by partition in offset order (callers check the offsets).
func consumeAll(t testing.TB, b *Broker, topic string, opts ...kgo.Opt) map[int32][]*kgo.Record {
	t.Helper()
	ends := endOffsets(t, b.Admin(t), topic)
	return consumeUntil(t, b, topic, ends, opts...)
}

// consumeUntil reads topic from the start until every partition p has delivered the record at
// offset ends[p]-1.
func consumeUntil(t testing.TB, b *Broker, topic string, ends map[int32]int64, opts ...kgo.Opt) map[int32][]*kgo.Record {
	t.Helper()
	all := append([]kgo.Opt{
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	}, opts...)
	cl := b.Client(t, all...)
	defer cl.Close()
	out := make(map[int32][]*kgo.Record)
	done := func() bool {
		for p, end := range ends {
			if end == 0 {
				continue
			}
			rs := out[p]
			if len(rs) == 0 || rs[len(rs)-1].Offset < end-1 {
				return false
			}
		}
		return true
	}
	ctx := ctxTimeout(t, opTimeout)
	for !done() {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			got := make(map[int32]int)
			for p, rs := range out {
				got[p] = len(rs)
			}
			t.Fatalf("consume %s: timed out; want end offsets %v, got record counts %v", topic, ends, got)
		}
		fs.EachError(func(tp string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("consume %s/%d: %v", tp, p, err)
			}
		})
		if t.Failed() {
			t.FailNow()
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset < ends[r.Partition] {
				out[r.Partition] = append(out[r.Partition], r)
			}
		})
	}
	return out
}

// checkContiguous fails unless each partition's records have offsets 0,1,2,… with no gap or repeat.
func checkContiguous(t testing.TB, byPart map[int32][]*kgo.Record) {
	t.Helper()
	for p, rs := range byPart {
		for i, r := range rs {
			if r.Offset != int64(i) {
				t.Fatalf("partition %d: record #%d has offset %d, want %d (offsets not contiguous)", p, i, r.Offset, i)
			}
		}
	}
}

// sortedPartitions returns the keys of m in order.
func sortedPartitions[V any](m map[int32]V) []int32 {
	ps := make([]int32, 0, len(m))
	for p := range m {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	return ps
}

// topicName makes a topic name unique to the test.
func topicName(t testing.TB, suffix string) string {
	name := strings.NewReplacer("/", "-", " ", "-", "#", "-").Replace(t.Name())
	if suffix != "" {
		name += "-" + suffix
	}
	return strings.ToLower(name)
}
