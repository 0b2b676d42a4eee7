// Package e2e drives a real bin/ringtail process with real Kafka clients (franz-go) over real
// sockets on 127.0.0.1. Nothing is mocked. It owns the single-broker end-to-end tests and their
// helpers (topics, produce, consume, raw protocol, power cuts); broker processes themselves are
// test/cluster's. The binary comes from $RINGTAIL_BIN, or is built once from cmd/ringtail.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringtail/ringtail/test/cluster"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
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
	bin, err := cluster.Binary()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 2
	}
	defer cluster.CleanupBinary()
	brokerBin = bin
	return m.Run()
}

// Broker is a test/cluster broker process bound to the test that started it: its methods fail
// that test instead of returning errors, which keeps the tests short. Addr, DataDir, Log and
// Running come from cluster.Broker.
type Broker struct {
	*cluster.Broker
	t testing.TB
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

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago (for --metrics-listen and
// the like; startBroker picks the Kafka port itself).
func freePort(t testing.TB) int {
	t.Helper()
	addrs, err := cluster.FreeAddrs("127.0.0.1", 1)
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(addrs[0])
	n, _ := strconv.Atoi(port)
	return n
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
	b := cluster.StartBrokerT(t, cluster.BrokerConfig{
		Bin:          brokerBin,
		DataDir:      cfg.dataDir, // empty: a fresh t.TempDir()
		Args:         cfg.args,
		Env:          cfg.env,
		ReadyTimeout: readyTimeout,
		StopTimeout:  stopTimeout,
	})
	return &Broker{Broker: b, t: t}
}

// pingApiVersions checks, once, that the broker answers ApiVersions on a fresh connection: that
// a broker which was up still is.
func pingApiVersions(addr string) error {
	return cluster.PingApiVersions(context.Background(), addr)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// Stop sends SIGTERM and waits for the process to exit; it fails the test if it does not exit
// in time or exits with an error status.
func (b *Broker) Stop() {
	b.t.Helper()
	err := b.Broker.Stop()
	switch {
	case errors.Is(err, cluster.ErrStopTimeout):
		b.t.Fatalf("%v", err)
	case err != nil:
		b.t.Errorf("%v (want a clean exit)", err)
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (b *Broker) Kill() {
	b.t.Helper()
	if err := b.Broker.Kill(); err != nil {
		b.t.Fatalf("%v", err)
	}
}

// Restart starts the broker again on the same port and data directory and waits until it
// answers. The old process must already be stopped or killed.
func (b *Broker) Restart() {
	b.t.Helper()
	if b.Running() {
		b.t.Fatalf("Restart: broker still running")
	}
	if err := b.Broker.Start(context.Background()); err != nil {
		b.t.Fatalf("%v", err)
	}
}

// Client returns a franz-go client seeded with this broker, closed when the test ends.
func (b *Broker) Client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	return b.ClientT(t, opts...)
}

// Admin returns a kadm client over a fresh franz-go client.
func (b *Broker) Admin(t testing.TB) *kadm.Client {
	t.Helper()
	return b.AdminT(t)
}

// waitLog waits until the broker log (of any run) has a line containing substr. It fails the
// test after the deadline.
func (b *Broker) waitLog(t testing.TB, substr string, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.WaitLog(ctx, 0, substr); err != nil {
		t.Errorf("%s: broker log has no line mentioning %q: %v", what, substr, err)
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
	return consumeUntilWith(t, func(o ...kgo.Opt) *kgo.Client { return b.Client(t, o...) }, topic, ends, opts...)
}

// consumeUntilWith is consumeUntil with a client made by client (of one broker, or of a cluster).
func consumeUntilWith(t testing.TB, client func(...kgo.Opt) *kgo.Client, topic string, ends map[int32]int64, opts ...kgo.Opt) map[int32][]*kgo.Record {
	t.Helper()
	all := append([]kgo.Opt{
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	}, opts...)
	cl := client(all...)
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
