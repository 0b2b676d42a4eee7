package perf

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Ringtail's replication counters (internal/metrics), on a cluster node's --metrics-listen.
const (
	MetricReplicationSent   = "ringtail_replication_sent_bytes_total"
	MetricReplicationCopied = "ringtail_replication_copied_bytes_total"
	// MetricReplicationFromMemory: of the bytes sent, those sent from the leader's appended
	// buffers (writev) rather than its segment files (sendfile).
	MetricReplicationFromMemory = "ringtail_replication_sent_from_memory_bytes_total"
	// An acks=all produce's wait, split (sum and count of each histogram): until durable on the
	// leader (local) and then until the high watermark passed it (replication).
	MetricCommittedLocalSum       = "ringtail_committed_append_local_seconds_sum"
	MetricCommittedLocalCount     = "ringtail_committed_append_local_seconds_count"
	MetricCommittedReplicationSum = "ringtail_committed_append_replication_seconds_sum"
	MetricCommittedReplicationCnt = "ringtail_committed_append_replication_seconds_count"
	// The WAL's group commits: cycles, the records they carried, and their summed time.
	MetricWALCycles      = "ringtail_wal_cycles_total"
	MetricWALRecords     = "ringtail_wal_records_total"
	MetricWALCycleSumSec = "ringtail_wal_cycle_duration_seconds_sum"
)

// ParseMetrics reads the samples named names out of a Prometheus text exposition (version
// 0.0.4): `name value [timestamp]` or `name{labels} value [timestamp]` lines, comments and
// blank lines skipped. A name's samples are summed over their labels; a name with no sample is
// absent from the result. A line of a wanted name that does not parse is an error.
func ParseMetrics(text string, names ...string) (map[string]float64, error) {
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	out := map[string]float64{}
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		end := strings.IndexAny(line, "{ \t")
		if end < 0 {
			continue
		}
		name, rest := line[:end], line[end:]
		if !want[name] {
			continue
		}
		if rest[0] == '{' {
			j := labelsEnd(rest)
			if j < 0 {
				return nil, fmt.Errorf("metrics line %d: unterminated labels: %q", i+1, line)
			}
			rest = rest[j+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 || len(f) > 2 {
			return nil, fmt.Errorf("metrics line %d: want a value and at most a timestamp: %q", i+1, line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil || math.IsNaN(v) {
			return nil, fmt.Errorf("metrics line %d: bad value %q", i+1, f[0])
		}
		out[name] += v
	}
	return out, nil
}

// labelsEnd is the index of the '}' closing the label set s starts with, or -1. Label values
// are quoted and may hold '}', spaces and escaped quotes.
func labelsEnd(s string) int {
	quoted := false
	for j := 1; j < len(s); j++ {
		switch c := s[j]; {
		case c == '\\' && quoted:
			j++
		case c == '"':
			quoted = !quoted
		case c == '}' && !quoted:
			return j
		}
	}
	return -1
}

// ScrapeMetrics fetches http://addr/metrics and returns the samples named names (ParseMetrics).
func ScrapeMetrics(ctx context.Context, addr string, names ...string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s/metrics: %s", addr, resp.Status)
	}
	return ParseMetrics(string(body), names...)
}
