package engine

import (
	"sync"
	"testing"
)

// BenchmarkAppendParallel measures acknowledged (fdatasync'd) appends of
// one-record batches from many goroutines to four partitions: group commit
// at work. Reports batches/s via ns/op.
func BenchmarkAppendParallel(b *testing.B) {
	var tps []TopicPartition
	for i := 0; i < 4; i++ {
		tps = append(tps, TopicPartition{Topic: "bench", Partition: int32(i)})
	}
	e, err := Open(Config{DataDir: b.TempDir(), Logger: quietLogger(), WALFileBytes: 64 << 20}, nil)
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
