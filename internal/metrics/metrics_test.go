package metrics

import (
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

type fakeWAL struct{ mode, reason string }

func (f fakeWAL) WALMode() string                    { return f.mode }
func (f fakeWAL) WALFallbackReason() string          { return f.reason }
func (f fakeWAL) WALStats() (cycles, records uint64) { return 3, 7 }
func (f fakeWAL) CheckpointsStopped() bool           { return true }

type fakeCleaner struct{}

func (fakeCleaner) CleanerCounters() (uint64, uint64, time.Duration, float64) {
	return 4096, 1024, 1500 * time.Millisecond, 0.75
}

func render(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	return string(body)
}

func TestObservations(t *testing.T) {
	m := New()
	m.RegisterWAL(fakeWAL{mode: "portable", reason: "io_uring_setup: operation not permitted"})
	m.RegisterCleaner(fakeCleaner{})
	m.ObserveWALCycle(4, 8192, 300*time.Microsecond, nil)
	m.ObserveWALCycle(2, 4096, time.Millisecond, errors.New("EIO"))
	m.ObserveRequest(0, 2*time.Millisecond)  // Produce
	m.ObserveRequest(-1, time.Millisecond)   // out of range: ignored
	m.ObserveRequest(1000, time.Millisecond) // out of range: ignored
	out := render(t, m)
	for _, want := range []string{
		`ringtail_wal_io_info{mode="portable"} 1`,
		`ringtail_wal_io_fallback{reason="io_uring_setup: operation not permitted"} 1`,
		"ringtail_wal_cycles_total 3",
		"ringtail_wal_records_total 7",
		"ringtail_checkpoints_stopped 1",
		"ringtail_log_cleaner_read_bytes_total 4096",
		"ringtail_log_cleaner_written_bytes_total 1024",
		"ringtail_log_cleaner_last_run_seconds 1.5",
		"ringtail_log_cleaner_max_dirty_ratio 0.75",
		"ringtail_wal_cycle_duration_seconds_count 1",
		"ringtail_wal_cycle_records_sum 4",
		"ringtail_wal_cycle_bytes_sum 8192",
		"ringtail_wal_cycle_errors_total 1",
		`ringtail_request_duration_seconds_count{api="Produce"} 1`,
		"go_goroutines",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
}
