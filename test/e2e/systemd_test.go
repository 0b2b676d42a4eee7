package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringtail/ringtail/test/cluster"
	"github.com/twmb/franz-go/pkg/kgo"
)

// notifySocket is the service manager's end of the notify protocol: a unix datagram socket
// the broker finds in NOTIFY_SOCKET, as systemd would bind it.
type notifySocket struct {
	path string
	conn *net.UnixConn
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	// A short directory: a unix socket path holds at most 107 bytes.
	dir, err := os.MkdirTemp("", "sdnotify")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &notifySocket{path: path, conn: conn}
}

// notifyMsg is one datagram: its assignments (READY=1, STATUS=…) and when it arrived.
type notifyMsg struct {
	at     time.Time
	fields map[string]string
}

func (m notifyMsg) String() string { return fmt.Sprint(m.fields) }

// next waits up to d for the next datagram.
func (s *notifySocket) next(d time.Duration) (notifyMsg, error) {
	buf := make([]byte, 4096)
	s.conn.SetReadDeadline(time.Now().Add(d))
	n, err := s.conn.Read(buf)
	if err != nil {
		return notifyMsg{}, err
	}
	m := notifyMsg{at: time.Now(), fields: map[string]string{}}
	for _, line := range strings.Split(string(buf[:n]), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m.fields[k] = v
		}
	}
	return m, nil
}

// waitMsg reads datagrams until match accepts one, up to d in all; seen gets every message
// read on the way.
func (s *notifySocket) waitMsg(t *testing.T, d time.Duration, what string, match func(notifyMsg) bool, seen func(notifyMsg)) notifyMsg {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		m, err := s.next(time.Until(deadline))
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if seen != nil {
			seen(m)
		}
		if match(m) {
			return m
		}
	}
}

func postDebug(t *testing.T, addr, path string) {
	t.Helper()
	resp, err := http.Post("http://"+addr+path, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %s", path, resp.Status)
	}
}

// TestSystemdNotify runs the broker as systemd would run a Type=notify unit with a watchdog:
// READY only once the Kafka port answers, WATCHDOG pings at least every half interval while
// healthy, no pings while the WAL writer is wedged (and pings again once it is released),
// STOPPING and exit status 0 on SIGTERM, and every acknowledged record back after the restart.
func TestSystemdNotify(t *testing.T) {
	sock := listenNotify(t)
	const watchdogInterval = 4 * time.Second
	addrs, err := cluster.FreeAddrs("127.0.0.1", 2)
	if err != nil {
		t.Fatal(err)
	}
	kafkaAddr, debugAddr := addrs[0], addrs[1]
	dataDir := t.TempDir()
	proc, err := cluster.StartProcess(cluster.ProcessConfig{
		Name: "broker (systemd)",
		Path: brokerBin,
		Args: []string{"serve", "--listen", kafkaAddr, "--data-dir", dataDir, "--debug-listen", debugAddr},
		Env: []string{"NOTIFY_SOCKET=" + sock.path, fmt.Sprintf("WATCHDOG_USEC=%d", watchdogInterval.Microseconds()),
			"RINGTAIL_FAULT_INJECTION=1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if proc.Running() {
			proc.Kill()
		}
		if t.Failed() {
			t.Logf("broker output:\n%s", proc.OutputTail(8000))
		}
	}()

	// READY=1 comes only after the listener answers: at that moment one ApiVersions on a
	// fresh connection must succeed, with no retry.
	var statuses []string
	collect := func(m notifyMsg) {
		if s, ok := m.fields["STATUS"]; ok {
			statuses = append(statuses, s)
		}
	}
	ready := sock.waitMsg(t, readyTimeout, "READY=1", func(m notifyMsg) bool { return m.fields["READY"] == "1" }, collect)
	if err := cluster.PingApiVersions(context.Background(), kafkaAddr); err != nil {
		t.Fatalf("READY=1 arrived but the Kafka port does not answer: %v", err)
	}
	if !strings.HasPrefix(ready.fields["STATUS"], "serving") {
		t.Errorf("STATUS with READY = %q, want serving…", ready.fields["STATUS"])
	}
	if len(statuses) == 0 || !strings.Contains(strings.Join(statuses, "|"), "recovering") && !strings.Contains(strings.Join(statuses, "|"), "starting") {
		t.Errorf("no STATUS before READY said what the broker was doing: %q", statuses)
	}

	// Healthy: WATCHDOG=1 at least every half interval, over three intervals.
	isPing := func(m notifyMsg) bool { return m.fields["WATCHDOG"] == "1" }
	last := ready.at
	until := time.Now().Add(3 * watchdogInterval)
	for pings := 0; time.Now().Before(until) || pings < 3; {
		m := sock.waitMsg(t, watchdogInterval, "WATCHDOG=1", isPing, nil)
		if gap := m.at.Sub(last); gap > watchdogInterval/2 {
			t.Fatalf("WATCHDOG=1 after %v, want at most half the interval (%v)", gap, watchdogInterval/2)
		}
		last = m.at
		pings++
	}

	// Acknowledged records before the wedge.
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafkaAddr), kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DefaultProduceTopic("sd"),
		kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i := range 10 {
		produceSync(t, cl, &kgo.Record{Value: fmt.Appendf(nil, "before-%d", i)})
	}

	// Wedge the WAL writer and give it work: the pings must stop, and STATUS says why.
	postDebug(t, debugAddr, "/debug/ringtail/fault/wedge-wal")
	acked := make(chan error, 1)
	cl.Produce(context.Background(), &kgo.Record{Value: []byte("during-wedge")}, func(_ *kgo.Record, err error) { acked <- err })
	isStuck := func(m notifyMsg) bool { return strings.HasPrefix(m.fields["STATUS"], "stuck") }
	stuck := sock.waitMsg(t, 4*watchdogInterval, "a stuck STATUS", isStuck, func(m notifyMsg) {
		if isPing(m) && isStuck(m) {
			t.Fatalf("WATCHDOG=1 sent with a stuck STATUS: %v", m)
		}
	})
	if !strings.Contains(stuck.fields["STATUS"], "wal writer") {
		t.Errorf("stuck STATUS %q does not name the WAL writer", stuck.fields["STATUS"])
	}
	// While stuck, each tick updates STATUS (the stall grows) and none pings.
	for range 3 {
		m, err := sock.next(watchdogInterval)
		if err != nil {
			t.Fatalf("while wedged: %v", err)
		}
		if isPing(m) {
			t.Fatalf("WATCHDOG=1 while the WAL writer is wedged: %v", m)
		}
	}
	select {
	case err := <-acked:
		t.Fatalf("a produce was answered while the WAL writer was wedged (err %v)", err)
	default:
	}

	// Released: the record is acknowledged and the pings resume.
	postDebug(t, debugAddr, "/debug/ringtail/fault/release-wal")
	select {
	case err := <-acked:
		if err != nil {
			t.Fatalf("produce after the release: %v", err)
		}
	case <-time.After(opTimeout):
		t.Fatal("no ack after the WAL writer was released")
	}
	sock.waitMsg(t, 4*watchdogInterval, "WATCHDOG=1 after the release", isPing, nil)
	cl.Close()

	// SIGTERM: STOPPING=1, then exit status 0.
	if err := proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	sock.waitMsg(t, stopTimeout, "STOPPING=1", func(m notifyMsg) bool { return m.fields["STOPPING"] == "1" }, nil)
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	if err := proc.Wait(ctx); err != nil {
		t.Fatalf("after SIGTERM: %v (exit status %d, want 0)", err, proc.ExitCode())
	}

	// The next start takes the clean path (no WAL replay) and loses nothing: every
	// acknowledged record is there.
	b := startBroker(t, withDataDir(dataDir))
	if !strings.Contains(b.Log(), "recovery: clean shutdown, replay skipped") {
		t.Errorf("the start after a controlled shutdown did not take the clean path:\n%s", b.Log())
	}
	got := consumeAll(t, b, "sd")
	var values []string
	for _, r := range got[0] {
		values = append(values, string(r.Value))
	}
	want := []string{}
	for i := range 10 {
		want = append(want, fmt.Sprintf("before-%d", i))
	}
	want = append(want, "during-wedge")
	if strings.Join(values, ",") != strings.Join(want, ",") {
		t.Fatalf("after the restart: %q, want %q", values, want)
	}
	b.Stop()
}

// TestSighupReload: SIGHUP re-reads the config file; a live setting is applied and logged, a
// setting that takes a restart is logged as such, and the broker keeps serving.
func TestSighupReload(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "ringtail.conf")
	if err := os.WriteFile(conf, []byte("log-level = info\nnum-partitions = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, withArgs("--config", conf))
	if err := os.WriteFile(conf, []byte("log-level = debug\nnum-partitions = 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	from := b.Process().OutputLen()
	if err := b.Process().Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := b.Process().WaitLine(ctx, from, func(l string) bool {
		return strings.Contains(l, "reload (SIGHUP): applied") && strings.Contains(l, "setting=log-level") && strings.Contains(l, "new=debug")
	}); err != nil {
		t.Fatalf("no log line applying log-level: %v", err)
	}
	if _, err := b.Process().WaitLine(ctx, from, func(l string) bool {
		return strings.Contains(l, "takes a restart") && strings.Contains(l, "setting=num-partitions")
	}); err != nil {
		t.Fatalf("no log line saying num-partitions takes a restart: %v", err)
	}
	// The new level is in effect: debug lines appear (a new connection logs one).
	if err := pingApiVersions(b.Addr()); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Process().WaitLine(ctx, from, func(l string) bool { return strings.Contains(l, "level=DEBUG") }); err != nil {
		t.Fatalf("no debug line after the reload: %v", err)
	}
	// A file that no longer parses changes nothing.
	if err := os.WriteFile(conf, []byte("log-level = loud\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	from = b.Process().OutputLen()
	if err := b.Process().Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Process().WaitLine(ctx, from, func(l string) bool { return strings.Contains(l, "does not parse; nothing changed") }); err != nil {
		t.Fatalf("no log line refusing the bad file: %v", err)
	}
	if err := pingApiVersions(b.Addr()); err != nil {
		t.Fatalf("not serving after the reloads: %v", err)
	}
	b.Stop()
}

// TestSecondSignalExitsAtOnce: a shutdown that cannot finish (the WAL writer is wedged, so the
// last sync never completes) ends at once on a second SIGTERM, with status 1, and the next
// start still has every acknowledged record.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	// The watchdog's STATUS tells when the wedged WAL writer has the produce pending.
	sock := listenNotify(t)
	debugAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	b := startBroker(t, withArgs("--debug-listen", debugAddr),
		withEnv("RINGTAIL_FAULT_INJECTION=1", "NOTIFY_SOCKET="+sock.path, "WATCHDOG_USEC=2000000"))
	cl := b.Client(t, kgo.DefaultProduceTopic("second"), kgo.AllowAutoTopicCreation())
	produceSync(t, cl, &kgo.Record{Value: []byte("acked")})
	postDebug(t, debugAddr, "/debug/ringtail/fault/wedge-wal")
	cl.Produce(context.Background(), &kgo.Record{Value: []byte("never acked")}, nil)
	sock.waitMsg(t, opTimeout, "a stuck WAL writer", func(m notifyMsg) bool {
		return strings.HasPrefix(m.fields["STATUS"], "stuck") && strings.Contains(m.fields["STATUS"], "wal writer")
	}, nil)

	proc := b.Process()
	from := proc.OutputLen()
	if err := proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	// The shutdown began; its drain waits for the wedged produce, and the storage close behind
	// it for the WAL, forever. (A second signal queued before the shutdown listens is kept.)
	if err := proc.WaitOutput(ctx, from, "shutting down"); err != nil {
		t.Fatalf("no shutdown began: %v", err)
	}
	select {
	case <-proc.Exited():
		t.Fatalf("the broker exited with its WAL writer wedged: %s", proc.OutputTail(2000))
	default:
	}
	if err := proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := proc.Wait(ctx); err == nil || proc.ExitCode() != 1 {
		t.Fatalf("after a second SIGTERM: %v, exit status %d; want 1", err, proc.ExitCode())
	}
	if !strings.Contains(proc.Output(), "second signal during the shutdown: exiting at once") {
		t.Errorf("no log line for the second signal:\n%s", proc.OutputTail(2000))
	}
	cl.Close()

	b.Restart()
	got := consumeAll(t, b, "second")
	if len(got[0]) == 0 || string(got[0][0].Value) != "acked" {
		t.Fatalf("after the restart: %v, want the acknowledged record first", got[0])
	}
	b.Stop()
}
