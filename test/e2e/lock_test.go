package e2e

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDataDirLocked: a second broker pointed at a data directory in use refuses to start, with a
// message saying why, and the first keeps serving.
func TestDataDirLocked(t *testing.T) {
	b := startBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, brokerBin, "serve",
		"--listen", "127.0.0.1:"+strconv.Itoa(freePort(t)), "--data-dir", b.DataDir()).CombinedOutput()
	if err == nil {
		t.Fatalf("a second broker started on a data dir in use:\n%s", out)
	}
	if !strings.Contains(string(out), "in use by another ringtail process") {
		t.Fatalf("second broker failed without saying the data dir is in use: %v\n%s", err, out)
	}
	if err := pingApiVersions(b.Addr()); err != nil {
		t.Fatalf("first broker disturbed: %v", err)
	}
}
