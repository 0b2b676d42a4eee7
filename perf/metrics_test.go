package perf

import (
	"context"
	"net"
	"net/http"
	"testing"
)

// An exposition the way prometheus/client_golang writes it: HELP and TYPE comments, counters in
// exponent notation, labelled samples (summed), a label value holding '}' and a space, a
// timestamp, and names that only start like a wanted one.
const exposition = `# HELP ringtail_replication_sent_bytes_total Record-batch bytes this node sent to its followers.
# TYPE ringtail_replication_sent_bytes_total counter
ringtail_replication_sent_bytes_total 1.2345678e+07
# HELP ringtail_replication_copied_bytes_total Of the bytes sent to followers, those copied through user space.
# TYPE ringtail_replication_copied_bytes_total counter
ringtail_replication_copied_bytes_total 0
ringtail_replication_sent_bytes_total_extra 99
ringtail_request_duration_seconds_count{api="Produce"} 10
ringtail_request_duration_seconds_count{api="Fetch",note="a } b \"q\""} 5 1700000000000

ringtail_request_duration_seconds_sum{api="Produce"} 0.5
`

func TestParseMetrics(t *testing.T) {
	got, err := ParseMetrics(exposition, MetricReplicationSent, MetricReplicationCopied,
		"ringtail_request_duration_seconds_count", "ringtail_absent")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{MetricReplicationSent: 12345678, MetricReplicationCopied: 0, "ringtail_request_duration_seconds_count": 15}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	for _, bad := range []string{
		"ringtail_replication_copied_bytes_total{a=\"}\"\n",
		"ringtail_replication_copied_bytes_total one\n",
		"ringtail_replication_copied_bytes_total 1 2 3\n",
		"ringtail_replication_copied_bytes_total NaN\n",
	} {
		if _, err := ParseMetrics(bad, MetricReplicationCopied); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	// A line of a name nobody asked for is never looked at.
	if _, err := ParseMetrics("other_metric garbage here and more\n", MetricReplicationCopied); err != nil {
		t.Errorf("unwanted line: %v", err)
	}
}

func TestScrapeMetrics(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(exposition)) })
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	defer srv.Close()
	got, err := ScrapeMetrics(context.Background(), l.Addr().String(), MetricReplicationSent)
	if err != nil || got[MetricReplicationSent] != 12345678 {
		t.Fatalf("scrape: %v %v", got, err)
	}
}
