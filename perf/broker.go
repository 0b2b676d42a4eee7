package perf

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// BrokerSpec says how to start a broker process. Args may use {addr} and {dir}, replaced by the
// listen address (127.0.0.1 and a free port) and a fresh data directory.
type BrokerSpec struct {
	Label      string
	Args       []string
	Durability string // for the report
}

// BrokerProc is a running broker the harness started.
type BrokerProc struct {
	Spec    BrokerSpec
	Addr    string
	Dir     string
	cmd     *exec.Cmd
	log     *lockedBuffer
	exited  chan struct{}
	waitErr error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 4<<20 { // keep memory bounded; the head has the startup lines
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// StartBroker starts spec in a fresh data directory under parent and waits until it answers a
// Kafka metadata request.
func StartBroker(ctx context.Context, spec BrokerSpec, parent string) (*BrokerProc, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(parent, spec.Label+"-")
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	args := make([]string, len(spec.Args))
	for i, a := range spec.Args {
		a = strings.ReplaceAll(a, "{addr}", addr)
		args[i] = strings.ReplaceAll(a, "{dir}", dir+"/data")
	}
	p := &BrokerProc{Spec: spec, Addr: addr, Dir: dir, log: &lockedBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(args[0], args[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start %s: %w", spec.Label, err)
	}
	go func() { p.waitErr = p.cmd.Wait(); close(p.exited) }()
	if err := p.waitReady(ctx, 30*time.Second); err != nil {
		p.Stop()
		return nil, fmt.Errorf("%s did not become ready: %v; log: %s", spec.Label, err, tail(p.log.String(), 600))
	}
	return p, nil
}

func (p *BrokerProc) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return fmt.Errorf("exited: %v", p.waitErr)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		c, err := net.DialTimeout("tcp", p.Addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			cl, err := kgo.NewClient(kgo.SeedBrokers(p.Addr))
			if err == nil {
				pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				err = cl.Ping(pctx)
				cancel()
				cl.Close()
				if err == nil {
					return nil
				}
			}
			last = err
		} else {
			last = err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return last
}

// PID is the broker's process id.
func (p *BrokerProc) PID() int { return p.cmd.Process.Pid }

// Alive reports whether the process is still running.
func (p *BrokerProc) Alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Log returns what the broker wrote to stdout and stderr.
func (p *BrokerProc) Log() string { return p.log.String() }

// Stop sends SIGTERM, waits up to 10 s, then kills the process group, and removes the data dir.
func (p *BrokerProc) Stop() {
	if p.Alive() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.exited
		}
	}
	os.RemoveAll(p.Dir)
}

// FindLine returns the first line of the broker's log containing any of the words, for the
// report (for example whether Ringtail runs on io_uring or its fallback).
func (p *BrokerProc) FindLine(words ...string) string {
	sc := bufio.NewScanner(strings.NewReader(p.Log()))
	for sc.Scan() {
		l := sc.Text()
		for _, w := range words {
			if strings.Contains(strings.ToLower(l), strings.ToLower(w)) {
				return oneLine(strings.TrimSpace(l), 160)
			}
		}
	}
	return ""
}

func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}
