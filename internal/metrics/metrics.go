// Package metrics owns the broker's Prometheus metrics: what the WAL writer
// does (cycles, records per cycle, write+sync latency, which writer is in
// use and why it fell back) and how long each Kafka API takes to answer.
// cmd/ringtail serves them on --metrics-listen under /metrics.
//
// The hot paths (a WAL cycle, a request) only call Observe on a histogram
// created up front; nothing here allocates or looks up labels per event.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/ringtail/ringtail/net/fetchsession"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Metrics is one broker's registry.
type Metrics struct {
	reg *prometheus.Registry

	walCycleSeconds prometheus.Histogram
	walCycleRecords prometheus.Histogram
	walCycleBytes   prometheus.Histogram
	walCycleErrors  prometheus.Counter

	// requestSeconds[key] observes API key's latency; nil for keys kmsg does not name.
	requestSeconds []prometheus.Observer

	committedLocalSeconds       prometheus.Histogram
	committedReplicationSeconds prometheus.Histogram
}

// New returns the registry with the Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	m.walCycleSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "ringtail_wal_cycle_duration_seconds",
		Help:    "Time from submitting a WAL cycle's write to its data being durable (write + fdatasync; with durability=none the WAL is not written).",
		Buckets: prometheus.ExponentialBuckets(25e-6, 2, 14), // 25 µs .. 205 ms
	})
	m.walCycleRecords = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "ringtail_wal_cycle_records",
		Help:    "WAL records (partition appends) written by one cycle: how much one sync is shared.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 12), // 1 .. 2048
	})
	m.walCycleBytes = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "ringtail_wal_cycle_bytes",
		Help:    "Bytes one WAL cycle wrote, padding to the 4 KiB block included.",
		Buckets: prometheus.ExponentialBuckets(4096, 2, 11), // 4 KiB .. 4 MiB
	})
	m.walCycleErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "ringtail_wal_cycle_errors_total",
		Help: "WAL cycles whose write or sync failed (their records were failed, never acknowledged).",
	})
	m.reg.MustRegister(m.walCycleSeconds, m.walCycleRecords, m.walCycleBytes, m.walCycleErrors)

	requests := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "ringtail_request_duration_seconds",
		Help:    "Time from the start of a request's handling to its response being ready, by Kafka API (long-polling fetches included).",
		Buckets: prometheus.ExponentialBuckets(25e-6, 2, 18), // 25 µs .. 3.3 s
	}, []string{"api"})
	m.reg.MustRegister(requests)

	m.committedLocalSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "ringtail_committed_append_local_seconds",
		Help:    "Appends answered once committed (acks=all produces, group coordinator and transaction marker writes): time from the append to its batches being durable on this node (Kafka's LocalTimeMs).",
		Buckets: prometheus.ExponentialBuckets(25e-6, 2, 16), // 25 µs .. 819 ms
	})
	m.committedReplicationSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "ringtail_committed_append_replication_seconds",
		Help:    "Appends answered once committed: time from being durable on this node to the high watermark passing them, i.e. waiting for the in-sync followers (Kafka's RemoteTimeMs; 0 on one node).",
		Buckets: prometheus.ExponentialBuckets(25e-6, 2, 16),
	})
	m.reg.MustRegister(m.committedLocalSeconds, m.committedReplicationSeconds)
	m.requestSeconds = make([]prometheus.Observer, kmsg.MaxKey+1)
	for key := range m.requestSeconds {
		if name := kmsg.NameForKey(int16(key)); name != "Unknown" {
			m.requestSeconds[key] = requests.WithLabelValues(name)
		}
	}
	return m
}

// Registry is where other parts register their own collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// ObserveWALCycle is engine.Config.OnWALCycle.
func (m *Metrics) ObserveWALCycle(records int, bytes int64, took time.Duration, err error) {
	if err != nil {
		m.walCycleErrors.Inc()
		return
	}
	m.walCycleSeconds.Observe(took.Seconds())
	m.walCycleRecords.Observe(float64(records))
	m.walCycleBytes.Observe(float64(bytes))
}

// ObserveRequest is kafkanet.ServerConfig.OnRequest.
func (m *Metrics) ObserveRequest(key int16, took time.Duration) {
	if key >= 0 && int(key) < len(m.requestSeconds) && m.requestSeconds[key] != nil {
		m.requestSeconds[key].Observe(took.Seconds())
	}
}

// ObserveCommittedAppend is broker.Config.OnCommittedAppend.
func (m *Metrics) ObserveCommittedAppend(local, replication time.Duration) {
	m.committedLocalSeconds.Observe(local.Seconds())
	m.committedReplicationSeconds.Observe(replication.Seconds())
}

// WALSource is what the WAL gauges read at scrape time (the engine).
type WALSource interface {
	WALMode() string
	WALFallbackReason() string
	WALStats() (cycles, records uint64)
	CheckpointsStopped() bool
}

// RegisterWAL adds the scrape-time WAL metrics: which writer is in use (and
// whether auto fell back from io_uring, with the reason) and the totals.
func (m *Metrics) RegisterWAL(src WALSource) {
	mode := src.WALMode()
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "ringtail_wal_io_info",
		Help:        "The WAL writer in use (label mode: uring+direct, uring, portable); always 1.",
		ConstLabels: prometheus.Labels{"mode": mode},
	}, func() float64 { return 1 }))
	reason := src.WALFallbackReason()
	fallback := 0.0
	if reason != "" {
		fallback = 1
	}
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "ringtail_wal_io_fallback",
		Help:        "1 when wal.io=auto could not use io_uring and the portable pwrite+fdatasync writer runs instead (label reason), else 0.",
		ConstLabels: prometheus.Labels{"reason": reason},
	}, func() float64 { return fallback }))
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "ringtail_wal_cycles_total",
		Help: "WAL cycles completed (one write + one sync each).",
	}, func() float64 { c, _ := src.WALStats(); return float64(c) }))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ringtail_checkpoints_stopped",
		Help: "1 once a segment sync has failed: no checkpoint is written again in this process and the WAL grows until a restart rewrites the segments from it; else 0.",
	}, func() float64 {
		if src.CheckpointsStopped() {
			return 1
		}
		return 0
	}))
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "ringtail_wal_records_total",
		Help: "WAL records made durable.",
	}, func() float64 { _, r := src.WALStats(); return float64(r) }))
}

// CleanerSource is what the log cleaner metrics read at scrape time (the engine).
type CleanerSource interface {
	// CleanerCounters: segment bytes read and written by the log cleaner, the duration of its
	// last run over all partitions, and the largest dirty ratio that run saw.
	CleanerCounters() (read, written uint64, lastRun time.Duration, maxDirtyRatio float64)
}

// RegisterCleaner adds the scrape-time log cleaner metrics.
func (m *Metrics) RegisterCleaner(src CleanerSource) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "ringtail_log_cleaner_read_bytes_total",
		Help: "Segment bytes the log cleaner read (key maps and rewrites of cleanup.policy=compact partitions).",
	}, func() float64 { r, _, _, _ := src.CleanerCounters(); return float64(r) }))
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "ringtail_log_cleaner_written_bytes_total",
		Help: "Cleaned segment bytes the log cleaner wrote.",
	}, func() float64 { _, w, _, _ := src.CleanerCounters(); return float64(w) }))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ringtail_log_cleaner_last_run_seconds",
		Help: "How long the log cleaner's last run over all partitions took.",
	}, func() float64 { _, _, d, _ := src.CleanerCounters(); return d.Seconds() }))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ringtail_log_cleaner_max_dirty_ratio",
		Help: "The largest dirty ratio (dirty bytes over cleanable bytes) of a compacted partition in the log cleaner's last run.",
	}, func() float64 { _, _, _, r := src.CleanerCounters(); return r }))
}

// ReplicationSource is what the replication metrics read at scrape time (a cluster node).
type ReplicationSource interface {
	ReplicationStats() (sent, fromMemory, copied uint64)
	UnderReplicated() int
	ISRChanges() uint64
	NodeID() int32
	ControllerID() int32 // -1: none known
	RaftTerm() uint64
}

// RegisterReplication adds the scrape-time replication metrics of a cluster node.
func (m *Metrics) RegisterReplication(src ReplicationSource) {
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "ringtail_replication_sent_bytes_total",
		Help: "Record-batch bytes this node sent to its followers.",
	}, func() float64 { s, _, _ := src.ReplicationStats(); return float64(s) }))
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "ringtail_replication_sent_from_memory_bytes_total",
		Help: "Of the bytes sent to followers, those sent (writev) from the buffers they were appended in; the rest went from segment files with sendfile.",
	}, func() float64 { _, mem, _ := src.ReplicationStats(); return float64(mem) }))
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "ringtail_replication_copied_bytes_total",
		Help: "Of the bytes sent to followers, those copied through user space (0 while they go out with sendfile or from the appended buffers).",
	}, func() float64 { _, _, c := src.ReplicationStats(); return float64(c) }))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ringtail_under_replicated_partitions",
		Help: "Partitions this node leads whose ISR is smaller than their replica set.",
	}, func() float64 { return float64(src.UnderReplicated()) }))
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "ringtail_isr_changes_total",
		Help: "ISR shrinks and expansions of the partitions this node leads, whoever made them (its AlterPartition, the controller fencing a follower).",
	}, func() float64 { return float64(src.ISRChanges()) }))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ringtail_controller",
		Help: "1 while this node is the controller (leads the metadata Raft log), else 0.",
	}, func() float64 {
		if src.ControllerID() == src.NodeID() {
			return 1
		}
		return 0
	}))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ringtail_controller_id",
		Help: "The node this node knows as the controller (-1: none known).",
	}, func() float64 { return float64(src.ControllerID()) }))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ringtail_raft_term",
		Help: "The metadata Raft log's term as this node knows it; each election moves it.",
	}, func() float64 { return float64(src.RaftTerm()) }))
}

// LeadershipSource is what the leadership metrics read at scrape time (any node).
type LeadershipSource interface {
	LedPartitions() int
}

// RegisterLeadership adds the partitions-led gauge.
func (m *Metrics) RegisterLeadership(src LeadershipSource) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ringtail_partitions_led",
		Help: "Partitions this node leads (a single node leads all of them).",
	}, func() float64 { return float64(src.LedPartitions()) }))
}

// FetchSessionSource is what the fetch-session metrics read at scrape time (net's handlers).
type FetchSessionSource interface {
	FetchSessionStats() fetchsession.Stats
}

// RegisterFetchSessions adds the fetch session (KIP-227) cache metrics.
func (m *Metrics) RegisterFetchSessions(src FetchSessionSource) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ringtail_fetch_sessions",
		Help: "Incremental fetch sessions cached (at most --max-incremental-fetch-session-cache-slots).",
	}, func() float64 { return float64(src.FetchSessionStats().Sessions) }))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ringtail_fetch_session_partitions",
		Help: "Partitions held by the cached fetch sessions.",
	}, func() float64 { return float64(src.FetchSessionStats().Partitions) }))
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "ringtail_fetch_session_evictions_total",
		Help: "Fetch sessions evicted to make room for a new one.",
	}, func() float64 { return float64(src.FetchSessionStats().Evictions) }))
}

// ConnectionSource is what the connection metrics read at scrape time (net's server): open
// connections, connections refused, request bytes held, and waits for request memory.
type ConnectionSource interface {
	ConnStats() (open int, refused uint64, queuedBytes int64, memoryWaits uint64)
}

// RegisterConnections adds the connection-limit and request-memory metrics.
func (m *Metrics) RegisterConnections(src ConnectionSource) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ringtail_connections",
		Help: "Client connections open.",
	}, func() float64 { o, _, _, _ := src.ConnStats(); return float64(o) }))
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "ringtail_connections_refused_total",
		Help: "Client connections closed at once because --max-connections were open.",
	}, func() float64 { _, r, _, _ := src.ConnStats(); return float64(r) }))
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "ringtail_request_bytes_queued",
		Help: "Request bytes held by all connections (received or announced, not yet answered); bounded by --queued-max-request-bytes.",
	}, func() float64 { _, _, q, _ := src.ConnStats(); return float64(q) }))
	m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "ringtail_request_memory_waits_total",
		Help: "Times a connection stopped reading because --queued-max-request-bytes were held.",
	}, func() float64 { _, _, _, w := src.ConnStats(); return float64(w) }))
}
