package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringtail/ringtail/test/cluster"
	"github.com/twmb/franz-go/pkg/kgo"
)

// waitFor polls cond until it holds; it fails the test after d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := cluster.Poll(ctx, func(context.Context) error {
		if !cond() {
			return errors.New("not yet")
		}
		return nil
	}); err != nil {
		t.Fatalf("timed out after %v waiting for %s", d, what)
	}
}

// waitGroupDone waits for wg with a deadline.
func waitGroupDone(t testing.TB, wg *sync.WaitGroup, d time.Duration, what string) {
	t.Helper()
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("timed out after %v waiting for %s", d, what)
	}
}

// TestIdempotentProducerAcrossRestart: an idempotent producer streams records while the broker is
// stopped (SIGTERM, or SIGKILL with requests in flight) and restarted on the same port; the same
// producer retries throughout. Every record must end up in the log exactly once, in produce
// order, and every produce must succeed.
func TestIdempotentProducerAcrossRestart(t *testing.T) {
	t.Run("sigterm", func(t *testing.T) { idempotentAcrossRestart(t, false) })
	t.Run("sigkill", func(t *testing.T) { idempotentAcrossRestart(t, true) })
}

func idempotentAcrossRestart(t *testing.T, kill bool) {
	b := startBroker(t)
	topic := "idem-restart"
	createTopic(t, b.Admin(t), topic, 3, nil)
	cl := b.Client(t,
		kgo.ProducerLinger(2*time.Millisecond),
		kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond }),
		kgo.MaxBufferedRecords(5000),
		kgo.MetadataMinAge(100*time.Millisecond), // retry soon after the restart (default waits 5s)
	)

	var (
		mu       sync.Mutex
		acked    = make(map[int32][]int) // partition -> record indexes in ack order
		errs     []error
		nAcked   atomic.Int64
		produced atomic.Int64
		wg       sync.WaitGroup
		stop     atomic.Bool
		done     = make(chan struct{})
	)
	ctx := ctxTimeout(t, 5*opTimeout)
	go func() {
		defer close(done)
		for i := 0; !stop.Load(); i++ {
			wg.Add(1)
			r := &kgo.Record{Topic: topic, Key: []byte("k" + strconv.Itoa(i%31)), Value: []byte(strconv.Itoa(i))}
			cl.Produce(ctx, r, func(r *kgo.Record, err error) {
				defer wg.Done()
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
					return
				}
				idx, _ := strconv.Atoi(string(r.Value))
				acked[r.Partition] = append(acked[r.Partition], idx)
				nAcked.Add(1)
			})
			produced.Add(1)
		}
	}()

	waitFor(t, opTimeout, "1000 acks before the restart", func() bool { return nAcked.Load() >= 1000 })
	if kill {
		b.Kill()
	} else {
		b.Stop()
	}
	atStop := produced.Load()
	inFlight := atStop - nAcked.Load()
	restartAt := time.Now()
	b.Restart()
	t.Logf("restart took %v", time.Since(restartAt))
	waitFor(t, opTimeout, "records produced after the restart", func() bool { return produced.Load() >= atStop+1000 })
	waitFor(t, opTimeout, "1000 acks after the restart", func() bool { return nAcked.Load() >= atStop+1000 })
	t.Logf("all records produced before the stop acknowledged %v after the restart began", time.Since(restartAt))
	stop.Store(true)
	<-done
	waitGroupDone(t, &wg, 2*opTimeout, "all produce acks")

	mu.Lock()
	defer mu.Unlock()
	if len(errs) > 0 {
		t.Fatalf("%d records failed across the restart; first: %v", len(errs), errs[0])
	}
	total := int(produced.Load())
	t.Logf("produced %d records; %d before the stop, of which %d were unacknowledged at that moment", total, atStop, inFlight)

	got := consumeAll(t, b, topic)
	checkContiguous(t, got)
	seen := make(map[int]bool, total)
	for _, p := range sortedPartitions(got) {
		want := acked[p]
		rs := got[p]
		prev := -1
		for i, r := range rs {
			idx, _ := strconv.Atoi(string(r.Value))
			if idx <= prev {
				t.Fatalf("partition %d offset %d: record %d after record %d: produce order not kept", p, r.Offset, idx, prev)
			}
			prev = idx
			if seen[idx] {
				t.Fatalf("record %d appears twice (partition %d offset %d)", idx, p, r.Offset)
			}
			seen[idx] = true
			if i >= len(want) || idx != want[i] {
				t.Fatalf("partition %d offset %d: record %d; acknowledged order wants %v", p, r.Offset, idx, want[i:min(i+1, len(want))])
			}
		}
		if len(rs) != len(want) {
			t.Fatalf("partition %d: %d records in the log, %d acknowledged", p, len(rs), len(want))
		}
	}
	if len(seen) != total {
		t.Fatalf("%d distinct records in the log, %d produced", len(seen), total)
	}
}

// ackedPos is where an acknowledged record was placed.
type ackedPos struct {
	partition int32
	offset    int64
}

// TestKill9UnderAcksAllLoad: several acks=all producers run while the broker is SIGKILLed; after
// a restart every acknowledged record is at the offset it was acknowledged with, nothing is
// duplicated, and each producer's records keep their order within a partition. 20 short cycles
// (E2E_KILL9_CYCLES changes that; `make soak` runs many more).
func TestKill9UnderAcksAllLoad(t *testing.T) {
	cycles := 20
	if v := os.Getenv("E2E_KILL9_CYCLES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("E2E_KILL9_CYCLES=%q: want a positive integer", v)
		}
		cycles = n
	}
	kill9UnderLoad(t, startBroker(t), cycles)
}

// TestKill9DurabilityNone: with --durability none (an ack once the segment is written, no WAL)
// a SIGKILL loses nothing acknowledged either: the page cache outlives the process.
func TestKill9DurabilityNone(t *testing.T) {
	kill9UnderLoad(t, startBroker(t, withArgs("--durability", "none")), 8)
}

// kill9UnderLoad kills b under acks=all load cycles times and checks every acknowledged record
// after each restart.
func kill9UnderLoad(t *testing.T, b *Broker, cycles int) {
	topic := "kill9"
	createTopic(t, b.Admin(t), topic, 4, nil)

	const (
		producers = 4
		ackGoal   = 1500 // acks per cycle before the kill
	)
	var (
		mu    sync.Mutex
		acked = make(map[string]ackedPos)
	)
	for cycle := 0; cycle < cycles; cycle++ {
		var (
			nAcked atomic.Int64
			wg     sync.WaitGroup // produce callbacks
			loops  sync.WaitGroup // producer goroutines
		)
		ctx, cancel := context.WithCancel(context.Background())
		clients := make([]*kgo.Client, producers)
		for p := range clients {
			cl, err := kgo.NewClient(
				kgo.SeedBrokers(b.Addr()),
				kgo.RequiredAcks(kgo.AllISRAcks()),
				kgo.ProducerLinger(time.Millisecond),
				kgo.MaxBufferedRecords(2000),
				kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond }),
			)
			if err != nil {
				t.Fatal(err)
			}
			clients[p] = cl
			loops.Add(1)
			go func(p int, cl *kgo.Client) {
				defer loops.Done()
				for i := 0; ctx.Err() == nil; i++ {
					val := fmt.Sprintf("c%d-p%d-%07d", cycle, p, i)
					wg.Add(1)
					cl.Produce(ctx, &kgo.Record{Topic: topic, Key: []byte(fmt.Sprintf("p%d-%d", p, i%16)), Value: []byte(val)},
						func(r *kgo.Record, err error) {
							defer wg.Done()
							if err != nil {
								return
							}
							mu.Lock()
							acked[string(r.Value)] = ackedPos{r.Partition, r.Offset}
							mu.Unlock()
							nAcked.Add(1)
						})
				}
			}(p, cl)
		}

		waitFor(t, 2*opTimeout, fmt.Sprintf("cycle %d: %d acks", cycle, ackGoal), func() bool { return nAcked.Load() >= ackGoal })
		b.Kill()
		cancel()
		loops.Wait()
		// Close fails whatever is still buffered or in flight (those records are unacknowledged).
		var closing sync.WaitGroup
		for _, cl := range clients {
			closing.Add(1)
			go func() { defer closing.Done(); cl.Close() }()
		}
		waitGroupDone(t, &closing, opTimeout, "closing the producers")
		waitGroupDone(t, &wg, opTimeout, "produce callbacks after the kill")

		b.Restart()
		mu.Lock()
		want := make(map[string]ackedPos, len(acked))
		for k, v := range acked {
			want[k] = v
		}
		mu.Unlock()
		t.Logf("cycle %d: %d acknowledged records so far", cycle, len(want))
		verifyAcked(t, b, topic, want)
	}
}

// verifyAcked reads the whole topic and checks every acknowledged record is at its acknowledged
// position, that no record appears twice, and that each producer's records are in order within
// each partition.
func verifyAcked(t *testing.T, b *Broker, topic string, want map[string]ackedPos) {
	t.Helper()
	got := consumeAll(t, b, topic)
	checkContiguous(t, got)
	where := make(map[string]ackedPos)
	for _, p := range sortedPartitions(got) {
		last := make(map[string]int) // "cycle-producer" -> last sequence seen in this partition
		for _, r := range got[p] {
			v := string(r.Value)
			if prev, dup := where[v]; dup {
				t.Fatalf("record %q appears twice: partition %d offset %d and partition %d offset %d", v, prev.partition, prev.offset, p, r.Offset)
			}
			where[v] = ackedPos{p, r.Offset}
			var cycle, prod, seq int
			if _, err := fmt.Sscanf(v, "c%d-p%d-%d", &cycle, &prod, &seq); err != nil {
				t.Fatalf("partition %d offset %d: unexpected value %q", p, r.Offset, v)
			}
			stream := fmt.Sprintf("%d-%d", cycle, prod)
			if s, ok := last[stream]; ok && seq <= s {
				t.Fatalf("partition %d offset %d: %q comes after sequence %d of the same producer: order broken", p, r.Offset, v, s)
			}
			last[stream] = seq
		}
	}
	missing := 0
	var example string
	for v, pos := range want {
		got, ok := where[v]
		if !ok || got != pos {
			if missing == 0 {
				example = fmt.Sprintf("%q acknowledged at partition %d offset %d, found=%v at %+v", v, pos.partition, pos.offset, ok, got)
			}
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged records are not where they were acknowledged; e.g. %s", missing, len(want), example)
	}
}
