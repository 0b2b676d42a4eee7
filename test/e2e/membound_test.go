package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ringtail/ringtail/test/cluster"
)

// TestAnnouncedFramesCostNothing opens many connections that each announce a near-maximal
// request frame and then send nothing more, as a slow or hostile client can: the broker must not
// allocate what was announced (its Go heap, read from /metrics, stays far below the total
// announced), and a regular client on another connection is served meanwhile.
func TestAnnouncedFramesCostNothing(t *testing.T) {
	port := freePort(t)
	b := startBroker(t, withArgs("--metrics-listen", fmt.Sprintf("127.0.0.1:%d", port)))
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)

	const conns, announced = 24, 90 << 20 // 2.1 GiB announced in all; the default limit is 100 MiB
	for i := 0; i < conns; i++ {
		rc := dialRaw(t, b.Addr())
		var prefix [8]byte
		binary.BigEndian.PutUint32(prefix[:4], announced)
		copy(prefix[4:], []byte{0, 18, 0, 0}) // the start of an ApiVersions header, then silence
		if err := rc.writeRaw(prefix[:]); err != nil {
			t.Fatal(err)
		}
	}

	cl := b.Client(t, kgo.DefaultProduceTopic("neighbour"), kgo.AllowAutoTopicCreation())
	produceSync(t, cl, &kgo.Record{Value: []byte("still served")})

	heap := scrape(t, url)["go_memstats_heap_alloc_bytes"]
	if heap == 0 {
		t.Fatal("no go_memstats_heap_alloc_bytes sample")
	}
	if limit := float64(256 << 20); heap > limit {
		t.Fatalf("broker heap %.0f MiB after %d connections announced %d MiB each: announced frames were allocated",
			heap/(1<<20), conns, announced>>20)
	}
	t.Logf("broker heap %.1f MiB with %d × %d MiB announced", heap/(1<<20), conns, announced>>20)
}

// TestPipelinedLargeRequestsWithinByteBound pipelines 75 MiB of ~700 KiB produce requests on
// one connection to a broker whose --max-request-bytes is 2 MiB: the per-connection byte bound
// must not follow that small limit (a bound of 2 MiB paused after two requests, and the close
// rule then dropped this legitimate client), and every request is answered, in order. That the
// bound does pause reading is TestByteBoundPausesReading's job (net), whose handlers can wait.
func TestPipelinedLargeRequestsWithinByteBound(t *testing.T) {
	b := startBroker(t, withArgs("--max-request-bytes", fmt.Sprint(2<<20)))
	createTopic(t, b.Admin(t), "big", 1, map[string]*string{"max.message.bytes": strp(fmt.Sprint(2 << 20))})
	version := pickVersion(t, apiVersions(t, b.Addr()), 0, 9)
	rc := dialRaw(t, b.Addr())

	const n = 110 // 110 × ~700 KiB ≈ 75 MiB, all sent before any answer is read
	// Send from a goroutine: the broker stops reading at the bound, so the socket buffers fill
	// and the writes block until answers are read.
	corrs := make(chan int32, n)
	sendErr := make(chan error, 1)
	go func() {
		defer close(corrs)
		for i := 0; i < n; i++ {
			value := bytes.Repeat([]byte{byte('a' + i%26)}, 700<<10)
			req := kmsg.NewPtrProduceRequest()
			req.Version = version
			req.Acks = -1
			req.TimeoutMillis = 30000
			rt := kmsg.NewProduceRequestTopic()
			rt.Topic = "big"
			rp := kmsg.NewProduceRequestTopicPartition()
			rp.Partition = 0
			rp.Records = encodeBatch(batchSpec{values: [][]byte{value}})
			rt.Partitions = append(rt.Partitions, rp)
			req.Topics = append(req.Topics, rt)
			corr, err := rc.send(req)
			if err != nil {
				sendErr <- fmt.Errorf("sending request %d: %w", i, err)
				return
			}
			corrs <- corr
		}
	}()
	i := 0
	for corr := range corrs {
		req := kmsg.NewPtrProduceRequest()
		resp, err := rc.readResponse(req, version, corr, 30*time.Second)
		if err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		p := resp.(*kmsg.ProduceResponse).Topics[0].Partitions[0]
		if p.ErrorCode != 0 || p.BaseOffset != int64(i) {
			t.Fatalf("response %d: error %d, base offset %d (want 0, %d)", i, p.ErrorCode, p.BaseOffset, i)
		}
		i++
	}
	select {
	case err := <-sendErr:
		t.Fatal(err)
	default:
	}
	if i != n {
		t.Fatalf("%d responses, want %d", i, n)
	}
}

// TestConnectionLimitAndMemoryBoundFlags: --max-connections closes a connection past the
// limit at its first request (a client's: a broker's would be kept, net/conn_limit.go), says so in the log and counts it in /metrics; --queued-max-request-bytes is
// reported there too, and requests within it are served.
func TestConnectionLimitAndMemoryBoundFlags(t *testing.T) {
	port := freePort(t)
	b := startBroker(t, withArgs("--metrics-listen", fmt.Sprintf("127.0.0.1:%d", port),
		"--max-connections", "2", "--queued-max-request-bytes", fmt.Sprint(8<<20)))
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	// The start-up probe's connection may not be counted out yet.
	err := cluster.Poll(ctxTimeout(t, opTimeout), func(context.Context) error {
		if n := scrape(t, url)["ringtail_connections"]; n != 0 {
			return fmt.Errorf("%v connections open", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	one, two := dialRaw(t, b.Addr()), dialRaw(t, b.Addr())
	for _, rc := range []*rawConn{one, two} {
		req := kmsg.NewPtrApiVersionsRequest()
		req.Version = 3
		req.ClientSoftwareName, req.ClientSoftwareVersion = "e2e", "1"
		rc.mustRoundTrip(t, req)
	}
	third := dialRaw(t, b.Addr())
	req := kmsg.NewPtrApiVersionsRequest()
	if _, err := third.send(req); err != nil {
		t.Fatal(err)
	}
	if _, err := third.readFrame(30 * time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a connection past --max-connections sent a client's request: %v, want it closed", err)
	}
	b.waitLog(t, "refusing connection: max.connections are open", "connection refusal")
	m := scrape(t, url)
	if m["ringtail_connections_refused_total"] != 1 || m["ringtail_connections"] != 2 {
		t.Fatalf("refused %v open %v, want 1 and 2", m["ringtail_connections_refused_total"], m["ringtail_connections"])
	}
	if m["ringtail_request_bytes_queued"] != 0 {
		t.Fatalf("request bytes held %v while idle", m["ringtail_request_bytes_queued"])
	}
}
