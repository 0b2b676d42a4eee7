package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const ioUringSysctl = "/proc/sys/kernel/io_uring_disabled"

// refuseIOUring sets kernel.io_uring_disabled=2, so io_uring_setup fails with EPERM for every
// process, as under Docker's default seccomp profile, until the test ends. It skips the test
// where the sysctl is absent or not writable (not root).
func refuseIOUring(t *testing.T) {
	t.Helper()
	old, err := os.ReadFile(ioUringSysctl)
	if err != nil {
		t.Skipf("%s not available (kernel older than 6.6): %v", ioUringSysctl, err)
	}
	if err := os.WriteFile(ioUringSysctl, []byte("2"), 0); err != nil {
		t.Skipf("cannot disable io_uring for the test (needs root): %v", err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(ioUringSysctl, old, 0); err != nil {
			t.Errorf("restoring %s to %q: %v", ioUringSysctl, strings.TrimSpace(string(old)), err)
		}
	})
}

// TestWALFallsBackWhenIOUringRefused: with io_uring refused by the kernel, wal.io=auto starts on
// the portable pwrite+fdatasync writer, says so once in the log, in the metrics and in
// DescribeConfigs, and serves acks=all produce and fetch; wal.io=uring refuses to start instead.
func TestWALFallsBackWhenIOUringRefused(t *testing.T) {
	refuseIOUring(t)
	port := freePort(t)
	b := startBroker(t, withArgs("--metrics-listen", fmt.Sprintf("127.0.0.1:%d", port)))

	b.waitLog(t, "io_uring unavailable, the wal uses the portable", "the fallback")
	b.waitLog(t, "ringtail started", "start")
	if n := strings.Count(b.Log(), "io_uring unavailable, the wal uses the portable"); n != 1 {
		t.Errorf("fallback logged %d times, want once; log:\n%s", n, tail(b.Log(), 3000))
	}
	m := scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if m[`ringtail_wal_io_info{mode="portable"}`] != 1 {
		t.Errorf("ringtail_wal_io_info does not say portable: %v", m)
	}
	fellBack := false
	for k, v := range m {
		if strings.HasPrefix(k, "ringtail_wal_io_fallback{") && v == 1 && strings.Contains(k, "not permitted") {
			fellBack = true
		}
	}
	if !fellBack {
		t.Errorf("no ringtail_wal_io_fallback sample of 1 naming the refusal")
	}

	req := kmsg.NewPtrDescribeConfigsRequest()
	res := kmsg.NewDescribeConfigsRequestResource()
	res.ResourceType = kmsg.ConfigResourceTypeBroker
	res.ResourceName = "1"
	req.Resources = append(req.Resources, res)
	cl := b.Client(t, kgo.DefaultProduceTopic("fallback"), kgo.AllowAutoTopicCreation())
	kresp, err := req.RequestWith(ctxTimeout(t, opTimeout), cl)
	if err != nil {
		t.Fatal(err)
	}
	walIO := ""
	for _, c := range kresp.Resources[0].Configs {
		if c.Name == "ringtail.wal.io" && c.Value != nil {
			walIO = *c.Value
		}
	}
	if walIO != "portable" {
		t.Errorf("DescribeConfigs ringtail.wal.io = %q, want portable", walIO)
	}
	for i := 0; i < 50; i++ {
		produceSync(t, cl, &kgo.Record{Value: []byte(fmt.Sprintf("v%d", i))})
	}
	if got := len(consumeAll(t, b, "fallback")[0]); got != 50 {
		t.Fatalf("consumed %d records, want 50", got)
	}

	// Forcing io_uring where it is refused is a configuration error: the broker says why and exits.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, brokerBin, "serve", "--wal-io", "uring", "--data-dir", t.TempDir(),
		"--listen", fmt.Sprintf("127.0.0.1:%d", freePort(t))).CombinedOutput()
	if err == nil || ctx.Err() != nil {
		t.Fatalf("wal-io=uring with io_uring refused: exit %v (timed out: %v); output:\n%s", err, ctx.Err() != nil, out)
	}
	if !strings.Contains(string(out), "io_uring") {
		t.Errorf("wal-io=uring refusal does not mention io_uring:\n%s", out)
	}
}
