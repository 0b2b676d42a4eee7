package main

import (
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestExtendStart: while the start runs, the notifier says what it waits for and extends
// systemd's start timeout again and again; once the start is done it stops.
func TestExtendStart(t *testing.T) {
	dir, err := os.MkdirTemp("", "sd")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	n := newNotifier(slog.New(slog.NewTextHandler(io.Discard, nil)))
	n.extendEvery = 10 * time.Millisecond
	done, exited := make(chan struct{}), make(chan struct{})
	go func() { n.extendStart(done, "recovering: replaying"); close(exited) }()

	read := func() string {
		t.Helper()
		buf := make([]byte, 1024)
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		k, err := conn.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		return string(buf[:k])
	}
	if got := read(); got != "STATUS=recovering: replaying" {
		t.Fatalf("first message %q, want the STATUS alone", got)
	}
	for range 2 {
		got := read()
		if !strings.Contains(got, "EXTEND_TIMEOUT_USEC=30000000\n") || !strings.Contains(got, "STATUS=recovering: replaying (") {
			t.Fatalf("message %q, want EXTEND_TIMEOUT_USEC=30000000 and the STATUS with the time so far", got)
		}
	}
	close(done)
	<-exited
}
