package memfs_test

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ringtail/ringtail/engine"
	"github.com/ringtail/ringtail/engine/batch"
	"github.com/ringtail/ringtail/vfs/memfs"
)

// The engine on memfs: what in-process multi-broker tests will run on. These
// tests prove it opens, appends, reads, closes and recovers through memfs
// alone (nothing reaches the disk), and that two engines can share one memfs.

func openEngine(t *testing.T, fsys *memfs.FS, dir string, specs ...engine.PartitionSpec) *engine.Engine {
	t.Helper()
	e, err := engine.Open(engine.Config{
		FS:           fsys,
		WALIO:        "portable", // io_uring needs the OS file system
		DataDir:      dir,
		WALFileBytes: 4 << 20, // the default 64 MiB is fine too (zeros are not stored); smaller is faster to fill
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		// One node: a record is committed (readable) once it is durable here.
		OnDurable: func(p *engine.Partition, end int64) { p.SetHighWatermark(end) },
	}, specs)
	if err != nil {
		t.Fatalf("engine.Open(%s) on memfs: %v", dir, err)
	}
	return e
}

func spec(topic string) engine.PartitionSpec {
	var id [16]byte
	copy(id[:], topic)
	return engine.PartitionSpec{TopicPartition: engine.TopicPartition{Topic: topic, Partition: 0}, TopicID: id}
}

// appendValues appends one batch per value and waits until each is durable.
func appendValues(p *engine.Partition, values ...string) error {
	for _, v := range values {
		b := batch.Build(batch.Header{FirstTimestamp: 1, MaxTimestamp: 1, ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1},
			[]batch.Record{{Value: []byte(v)}}, batch.CodecNone)
		done := make(chan error, 1)
		if _, err := p.Append(b, func(err error) { done <- err }); err != nil {
			return fmt.Errorf("append %q: %w", v, err)
		}
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("append %q: not durable: %w", v, err)
			}
		case <-time.After(30 * time.Second):
			return fmt.Errorf("append %q: never completed", v)
		}
	}
	return nil
}

func mustAppend(t *testing.T, p *engine.Partition, values ...string) {
	t.Helper()
	if err := appendValues(p, values...); err != nil {
		t.Fatal(err)
	}
}

// readValues reads the partition from offset 0 to its high watermark.
func readValues(t *testing.T, p *engine.Partition) []string {
	t.Helper()
	var out []string
	for off := int64(0); off < p.HighWatermark(); {
		res, err := p.Read(off, 1<<20, true)
		if err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		bs, err := batch.Split(res.Records)
		if err != nil || len(bs) == 0 {
			t.Fatalf("read at %d: %d batches, %v", off, len(bs), err)
		}
		for _, b := range bs {
			h, err := batch.ParseHeader(b)
			if err != nil {
				t.Fatal(err)
			}
			recs, err := batch.Records(b)
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range recs {
				if want := h.BaseOffset + int64(i); want != int64(len(out)) {
					t.Fatalf("record at offset %d read as the %d-th", want, len(out))
				}
				out = append(out, string(r.Value))
			}
			off = h.BaseOffset + int64(h.LastOffsetDelta) + 1
		}
	}
	return out
}

func values(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
}

// TestEngineOnMemFS: create a partition, append, read back, close, reopen
// from the same memfs and find every record; append after the reopen
// continues the offsets.
func TestEngineOnMemFS(t *testing.T) {
	fsys := memfs.New()
	s := spec("orders")
	e := openEngine(t, fsys, "/data")
	p, err := e.CreatePartition(s)
	if err != nil {
		t.Fatal(err)
	}
	first := values("first", 50)
	mustAppend(t, p, first...)
	if got := readValues(t, p); !slices.Equal(got, first) {
		t.Fatalf("before close: read %v, want %v", got, first)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	e = openEngine(t, fsys, "/data", s)
	defer e.Close()
	p = e.Partition(s.TopicPartition)
	if p == nil {
		t.Fatal("partition gone after reopen")
	}
	if got := readValues(t, p); !slices.Equal(got, first) {
		t.Fatalf("after reopen: read %v, want %v", got, first)
	}
	more := values("second", 10)
	mustAppend(t, p, more...)
	if got, want := readValues(t, p), append(first, more...); !slices.Equal(got, want) {
		t.Fatalf("after appending past the reopen: read %v, want %v", got, want)
	}
	if ents, err := fsys.ReadDir("/data"); err != nil || len(ents) == 0 {
		t.Fatalf("the engine left nothing in memfs /data: %v %v", ents, err)
	}
}

// TestTwoEnginesShareMemFS: two engines (two brokers' storage) append to one
// memfs at the same time in their own directories and see only their own
// records.
func TestTwoEnginesShareMemFS(t *testing.T) {
	fsys := memfs.New()
	s := spec("shared")
	var wg sync.WaitGroup
	for _, dir := range []string{"/broker1", "/broker2"} {
		e := openEngine(t, fsys, dir)
		defer e.Close()
		p, err := e.CreatePartition(s)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := appendValues(p, values(dir, 100)...); err != nil {
				t.Errorf("%s: %v", dir, err)
			}
		}()
		defer func() {
			if got := readValues(t, p); !slices.Equal(got, values(dir, 100)) {
				t.Errorf("%s: read %d records %v…, want its own 100", dir, len(got), got[:min(3, len(got))])
			}
		}()
	}
	wg.Wait()
}
