package kafkanet

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// startServerConfig starts a server with cfg (its listen address and logger filled in).
func startServerConfig(t *testing.T, reg *Registry, cfg ServerConfig) *Server {
	t.Helper()
	cfg.Listen, cfg.Logger = []string{"127.0.0.1:0"}, testLogger(t)
	s := NewServer(cfg, reg)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return s
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRequestMemoryBoundAcrossConnections: with queued.max.request.bytes at 1.5 MiB, two
// connections each holding a 1 MiB request use it up (a frame is admitted while any memory is
// left, as in Kafka); a third connection's small request then waits, unread, until those are
// answered, and is answered after them. A connection closed mid-frame returns what its frame
// held.
func TestRequestMemoryBoundAcrossConnections(t *testing.T) {
	b := newTestBroker()
	s := startServerConfig(t, b.reg, ServerConfig{QueuedMaxBytes: 3 << 19})
	big := "gate" + strings.Repeat("x", 1<<20)
	a, bb, c := dial(t, s), dial(t, s), dial(t, s)
	a.write(a.frame(metadataReq(big), 9))
	waitFor(t, "first held request", func() error {
		if n := b.gateSeen.Load(); n != 1 {
			return fmt.Errorf("%d held", n)
		}
		return nil
	})
	bb.write(bb.frame(metadataReq(big), 9))
	waitFor(t, "second held request", func() error {
		if n := b.gateSeen.Load(); n != 2 {
			return fmt.Errorf("%d held", n)
		}
		return nil
	})
	if _, _, held, _ := s.ConnStats(); held < 2<<20 {
		t.Fatalf("held %d bytes with two 1 MiB requests in flight", held)
	}
	c.write(c.frame(metadataReq("small"), 9))
	waitFor(t, "the third connection waiting for memory", func() error {
		if _, _, _, waits := s.ConnStats(); waits != 1 {
			return fmt.Errorf("%d waits", waits)
		}
		return nil
	})
	close(b.gate)
	for _, cl := range []*rawClient{a, bb, c} {
		if corr := cl.read(kmsg.NewPtrMetadataResponse(), 9); corr != 1 {
			t.Fatalf("correlation id %d", corr)
		}
	}
	waitFor(t, "memory released", func() error {
		if _, _, held, _ := s.ConnStats(); held != 0 {
			return fmt.Errorf("%d bytes held", held)
		}
		return nil
	})

	// A frame announced and cut off by a close: its bytes come back.
	d := dial(t, s)
	frame := d.frame(metadataReq(big), 9)
	d.write(frame[:1000])
	waitFor(t, "announced frame held", func() error {
		if _, _, held, _ := s.ConnStats(); held < 1<<20 {
			return fmt.Errorf("%d bytes held", held)
		}
		return nil
	})
	d.conn.Close()
	waitFor(t, "memory released after the close", func() error {
		if _, _, held, _ := s.ConnStats(); held != 0 {
			return fmt.Errorf("%d bytes held", held)
		}
		return nil
	})
	dial(t, s).roundTripApiVersions(b.reg)
}

// TestConnectionLimit: with max.connections 2 a third connection is closed at its first
// request (a client's) and counted; once one of the two closes, a new one is served.
func TestConnectionLimit(t *testing.T) {
	b := newTestBroker()
	s := startServerConfig(t, b.reg, ServerConfig{MaxConnections: 2})
	first, second := dial(t, s), dial(t, s)
	first.roundTripApiVersions(b.reg)
	second.roundTripApiVersions(b.reg)
	third := dial(t, s)
	third.write(third.frame(kmsg.NewPtrApiVersionsRequest(), 3))
	third.expectClosed()
	if open, refused, _, _ := s.ConnStats(); open != 2 || refused != 1 {
		t.Fatalf("open %d refused %d, want 2 and 1", open, refused)
	}
	first.conn.Close()
	waitFor(t, "the closed connection counted out", func() error {
		if open, _, _, _ := s.ConnStats(); open != 1 {
			return fmt.Errorf("%d open", open)
		}
		return nil
	})
	dial(t, s).roundTripApiVersions(b.reg)
	second.roundTripApiVersions(b.reg)
}

// TestConnectionLimitSparesBrokers: a broker's connection (its requests inter-broker ones, a
// heartbeat here) is kept outside max.connections, within the limit or past it, and may send nothing a
// client sends but ApiVersions; one whose first request is a client's is refused and counted,
// as is one past the bound on connections waiting for their first request.
func TestConnectionLimitSparesBrokers(t *testing.T) {
	b := newTestBroker()
	b.reg.Register(API{Key: int16(kmsg.BrokerHeartbeat), MinVersion: 0, MaxVersion: 1, Handle: func(_ *Context, req kmsg.Request, respond func(kmsg.Response)) {
		respond(req.ResponseKind())
	}})
	s := startServerConfig(t, b.reg, ServerConfig{MaxConnections: 1})
	heartbeat := func(c *rawClient) {
		t.Helper()
		c.write(c.frame(kmsg.NewPtrBrokerHeartbeatRequest(), 0))
		if corr := c.read(kmsg.NewPtrBrokerHeartbeatResponse(), 0); corr != c.corr {
			t.Fatalf("correlation id = %d, want %d", corr, c.corr)
		}
	}
	// A broker's connection within the limit leaves the count: the client's place is free.
	early := dial(t, s)
	heartbeat(early)
	waitFor(t, "the broker's connection out of the count", func() error {
		if open, _, _, _ := s.ConnStats(); open != 0 {
			return fmt.Errorf("%d open", open)
		}
		return nil
	})
	client := dial(t, s)
	client.roundTripApiVersions(b.reg)

	broker := dial(t, s)
	heartbeat(broker)
	broker.roundTripApiVersions(b.reg)
	heartbeat(broker)
	if open, refused, _, _ := s.ConnStats(); open != 1 || refused != 0 {
		t.Fatalf("open %d refused %d, want 1 (the client's; the broker's is outside the limit) and 0", open, refused)
	}

	late := dial(t, s)
	late.write(late.frame(kmsg.NewPtrApiVersionsRequest(), 3))
	late.expectClosed()
	if _, refused, _, _ := s.ConnStats(); refused != 1 {
		t.Fatalf("refused %d, want 1", refused)
	}
	// The broker's connection sends a client request: closed.
	broker.write(broker.frame(metadataReq("t"), 9))
	broker.expectClosed()

	// More than probationMax connections wait for their first request: the next is closed at once.
	for range probationMax {
		dial(t, s)
	}
	waitFor(t, "the connections on probation", func() error {
		if n := s.probation.Load(); n != probationMax {
			return fmt.Errorf("%d on probation", n)
		}
		return nil
	})
	dial(t, s).expectClosed()
	client.roundTripApiVersions(b.reg)

	// A client's connection (its first request a client's) that sends an inter-broker request
	// stays counted and unrestricted.
	heartbeat(client)
	client.write(client.frame(metadataReq("t"), 9))
	if corr := client.read(kmsg.NewPtrMetadataResponse(), 9); corr != client.corr {
		t.Fatalf("correlation id = %d, want %d", corr, client.corr)
	}
	if open, _, _, _ := s.ConnStats(); open != 1 {
		t.Fatalf("open %d, want the client's 1", open)
	}
}
