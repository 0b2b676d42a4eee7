package engine

import (
	"sort"
	"sync"
	"testing"
	"time"
)

// BenchmarkAppendParallel measures acknowledged (fdatasync'd) appends of
// one-record batches from many goroutines to four partitions: group commit
// at work. Reports batches/s via ns/op.
func BenchmarkAppendParallel(b *testing.B) {
	var tps []TopicPartition
	for i := 0; i < 4; i++ {
		tps = append(tps, TopicPartition{Topic: "bench", Partition: int32(i)})
	}
	e, err := testOpen(Config{DataDir: b.TempDir(), Logger: quietLogger(), WALFileBytes: 64 << 20}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	for _, tp := range tps {
		if _, err := e.CreatePartition(specFor(tp)); err != nil {
			b.Fatal(err)
		}
	}
	proto := mkBatch(batchOpts{n: 1, value: "0123456789012345678901234567890123456789"})
	b.SetParallelism(64)
	b.SetBytes(int64(len(proto)))
	b.ResetTimer()
	var mu sync.Mutex
	next := 0
	b.RunParallel(func(pb *testing.PB) {
		mu.Lock()
		p := e.Partition(tps[next%len(tps)])
		next++
		mu.Unlock()
		ch := make(chan error, 1)
		for pb.Next() {
			rec := append([]byte(nil), proto...)
			if _, err := p.Append(rec, func(err error) { ch <- err }); err != nil {
				b.Error(err)
				return
			}
			if err := <-ch; err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkAppendLone is a lone producer: one acknowledged one-record
// append at a time to one partition, so every append pays one WAL cycle.
// Compare its p50 with wal's BenchmarkRawWriteSync4K.
func BenchmarkAppendLone(b *testing.B) {
	e, err := testOpen(Config{DataDir: b.TempDir(), Logger: quietLogger(), WALFileBytes: 64 << 20}, []PartitionSpec{specFor(tpA)})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	p := e.Partition(tpA)
	proto := mkBatch(batchOpts{n: 1, value: string(make([]byte, 256))})
	ch := make(chan error, 1)
	lats := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := p.Append(append([]byte(nil), proto...), func(err error) { ch <- err }); err != nil {
			b.Fatal(err)
		}
		if err := <-ch; err != nil {
			b.Fatal(err)
		}
		lats = append(lats, time.Since(t0))
	}
	b.StopTimer()
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	b.ReportMetric(float64(lats[len(lats)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lats[len(lats)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
}

// BenchmarkFetchManyProducers reads the last batch of a partition that 10,000 transactional
// producers wrote to (each committed one transaction), read_committed: every fetch computes
// the last stable offset, which once walked every producer (txn.go's index of ongoing
// transactions reads it from the front instead).
func BenchmarkFetchManyProducers(b *testing.B) {
	e, err := testOpen(Config{DataDir: b.TempDir(), Logger: quietLogger(), Durability: DurabilityNone}, []PartitionSpec{specFor(tpA)})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	p := e.Partition(tpA)
	const producers = 10000
	for pid := int64(1); pid <= producers; pid++ {
		if _, err := p.Append(mkBatch(batchOpts{pid: pid, n: 1, value: "txn", attrs: 0x10}), nil); err != nil {
			b.Fatal(err)
		}
		if _, err := p.AppendMarker(pid, 0, true, 0, nil); err != nil {
			b.Fatal(err)
		}
	}
	last, err := p.Append(mkBatch(batchOpts{n: 1, value: "last"}), nil)
	if err != nil {
		b.Fatal(err)
	}
	if lso := p.LastStableOffset(); lso != last.EndOffset {
		b.Fatalf("lso %d, want the log end %d", lso, last.EndOffset)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := p.ReadIsolated(last.BaseOffset, 1<<20, true, true)
		if err != nil || len(res.Records) == 0 {
			b.Fatal(res, err)
		}
	}
}
