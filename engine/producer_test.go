package engine

import (
	"errors"
	"slices"
	"testing"
	"time"
)

// producerIDs lists the producers p remembers.
func producerIDs(p *Partition) []int64 {
	var ids []int64
	for _, pi := range p.Producers() {
		ids = append(ids, pi.ProducerID)
	}
	return ids
}

// TestProducerExpiration: a retention check forgets the producers whose last batch is
// ProducerIDExpiration old (by its timestamp) and which have no transaction open; a forgotten
// producer may write again from any sequence; a restart does not bring it back.
func TestProducerExpiration(t *testing.T) {
	dir := t.TempDir()
	const hour = int64(time.Hour / time.Millisecond)
	now := int64(1_700_000_000_000)
	cfg := Config{DataDir: dir, Now: func() int64 { return now }, ProducerIDExpiration: time.Hour, RetentionCheckInterval: -1}
	e := openEngine(t, cfg, tpA)
	p := e.Partition(tpA)

	t0 := now - 2 // producer 1's batch has records at t0, t0+1, t0+2: its max timestamp is now
	mustAppend(t, p, mkBatch(batchOpts{pid: 1, epoch: 0, seq: 0, n: 3, ts: t0}))
	txnProduce(t, p, 2, 0, 0, 1) // timestamp 0: as old as can be, but its transaction is open
	mustAppend(t, p, mkBatch(batchOpts{pid: 3, epoch: 0, seq: 0, n: 1, ts: t0 + hour/2}))

	now = t0 + 2 + hour - 1
	e.EnforceRetention()
	if got := producerIDs(p); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Fatalf("a millisecond before the expiration: producers %v, want [1 2 3]", got)
	}
	now = t0 + 2 + hour
	e.EnforceRetention()
	if got := producerIDs(p); !slices.Equal(got, []int64{2, 3}) {
		t.Fatalf("after producer 1's last batch is an hour old: producers %v, want [2 3] (2 has a transaction open)", got)
	}

	// Producer 1 goes on where it was, at sequence 3, without an error (KIP-360), and is
	// remembered again: a gap after that is refused.
	mustAppend(t, p, mkBatch(batchOpts{pid: 1, epoch: 0, seq: 3, n: 1, ts: now}))
	if _, err := p.Append(mkBatch(batchOpts{pid: 1, epoch: 0, seq: 5, n: 1, ts: now}), nil); !errors.Is(err, ErrOutOfOrderSequence) {
		t.Fatalf("a gap after producer 1 came back: %v, want an out-of-order sequence", err)
	}

	// Once its transaction ends, producer 2 goes an hour after its marker (its last batch),
	// producer 3 with it; 1 wrote since, so it stays.
	marker(t, p, 2, 0, true)
	markerTs := now
	now += int64(time.Minute / time.Millisecond)
	mustAppend(t, p, mkBatch(batchOpts{pid: 1, epoch: 0, seq: 4, n: 1, ts: now}))
	now = markerTs + hour
	e.EnforceRetention()
	if got := producerIDs(p); !slices.Equal(got, []int64{1}) {
		t.Fatalf("an hour after the commit: producers %v, want [1]", got)
	}

	// A restart recovers the producers remembered at the close, not the forgotten ones.
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	e = openEngine(t, cfg, tpA)
	p = e.Partition(tpA)
	if got := producerIDs(p); !slices.Equal(got, []int64{1}) {
		t.Fatalf("after a restart: producers %v, want [1]", got)
	}
	if _, err := p.Append(mkBatch(batchOpts{pid: 1, epoch: 0, seq: 6, n: 1, ts: now}), nil); !errors.Is(err, ErrOutOfOrderSequence) {
		t.Fatalf("producer 1's gap after a restart: %v, want an out-of-order sequence", err)
	}

	// Negative: never forgotten.
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	cfg.ProducerIDExpiration = -1
	e = openEngine(t, cfg, tpA)
	p = e.Partition(tpA)
	now += 1000 * hour
	e.EnforceRetention()
	if got := producerIDs(p); !slices.Equal(got, []int64{1}) {
		t.Fatalf("with the expiration off, 1000 hours later: producers %v, want [1]", got)
	}
}
