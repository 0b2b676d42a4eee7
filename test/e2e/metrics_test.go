package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/ringtail/ringtail/test/cluster"
	"github.com/twmb/franz-go/pkg/kgo"
)

// scrape fetches url and returns each sample line's value by its full name with labels,
// e.g. `ringtail_wal_io_info{mode="uring+direct"}`. The broker serves /metrics on a listener of
// its own, which startBroker's readiness (the Kafka port answering) says nothing about: scrape
// retries until the endpoint answers, up to readyTimeout, instead of assuming it is up.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	var body []byte
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	err := cluster.Poll(ctx, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s", resp.Status)
		}
		body, err = io.ReadAll(resp.Body)
		return err
	})
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("sample line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMetrics scrapes --metrics-listen after acknowledged produces: the WAL writer in use is
// named, io_uring did not fall back, and the WAL, cycle and Produce latency series count
// what was produced.
func TestMetrics(t *testing.T) {
	port := freePort(t)
	b := startBroker(t, withArgs("--metrics-listen", fmt.Sprintf("127.0.0.1:%d", port)))
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	cl := b.Client(t, kgo.DefaultProduceTopic("metered"), kgo.RequiredAcks(kgo.AllISRAcks()))
	createTopic(t, b.Admin(t), "metered", 1, nil)
	const n = 20
	for i := 0; i < n; i++ {
		produceSync(t, cl, &kgo.Record{Value: []byte(fmt.Sprintf("r%d", i))})
	}

	m := scrape(t, url)
	mode := ""
	for k, v := range m {
		if strings.HasPrefix(k, "ringtail_wal_io_info{") && v == 1 {
			mode = k
		}
	}
	if mode == "" {
		t.Fatalf("no ringtail_wal_io_info sample")
	}
	if !strings.Contains(mode, `mode="uring`) {
		t.Errorf("WAL writer %s, want io_uring on this machine", mode)
	}
	if v, ok := m[`ringtail_wal_io_fallback{reason=""}`]; !ok || v != 0 {
		t.Errorf("ringtail_wal_io_fallback{reason=\"\"} = %v (present %v), want 0", v, ok)
	}
	// Every acknowledged produce is at least one WAL record; topic creation adds none.
	if got := m["ringtail_wal_records_total"]; got < n {
		t.Errorf("ringtail_wal_records_total = %v, want >= %d", got, n)
	}
	if cycles, obs := m["ringtail_wal_cycles_total"], m["ringtail_wal_cycle_duration_seconds_count"]; cycles < 1 || obs != cycles {
		t.Errorf("ringtail_wal_cycles_total = %v, cycle latency observations %v: want equal and > 0", cycles, obs)
	}
	if got := m[`ringtail_request_duration_seconds_count{api="Produce"}`]; got < n {
		t.Errorf("Produce latency observations %v, want >= %d", got, n)
	}
	if got := m["ringtail_wal_cycle_errors_total"]; got != 0 {
		t.Errorf("ringtail_wal_cycle_errors_total = %v", got)
	}
	if got := m["ringtail_committed_append_local_seconds_count"]; got < n || m["ringtail_committed_append_local_seconds_sum"] <= 0 {
		t.Errorf("committed appends' local time: %v observations (sum %v), want >= %d acks=all produces", got, m["ringtail_committed_append_local_seconds_sum"], n)
	}
	// A single node leads every partition: metered's and __consumer_offsets'.
	if got := m["ringtail_partitions_led"]; got < 2 {
		t.Errorf("ringtail_partitions_led = %v, want every partition", got)
	}
}

// TestClusterMetrics scrapes the three brokers of a cluster: exactly one says it is the
// controller and all name it, they agree on the Raft term, the partitions they lead add up to
// every partition with a leader, and pausing the controller shows up on the other two as ISR
// changes and under-replicated partitions.
func TestClusterMetrics(t *testing.T) {
	c := startCluster3With(t, cluster3Opts{metrics: true, args: []string{"--replica-lag-time-max", "1s"}})
	adm, err := c.Broker(1).Admin()
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	topic := topicName(t, "metrics")
	if _, err := adm.CreateTopic(ctxTimeout(t, opTimeout), 6, 3, nil, topic); err != nil {
		t.Fatal(err)
	}
	scrapeAll := func() []map[string]float64 {
		var ms []map[string]float64
		for id := 1; id <= 3; id++ {
			ms = append(ms, scrape(t, "http://"+c.Broker(id).ExtraAddr("metrics")+"/metrics"))
		}
		return ms
	}
	waitCluster(t, "the brokers' metrics agree", func() error {
		md, err := metadataOf(t, c.Broker(1))
		if err != nil {
			return err
		}
		withLeader := 0
		for _, td := range md.Topics {
			for _, p := range td.Partitions {
				if p.Leader >= 0 {
					withLeader++
				}
			}
		}
		controllers, led := 0.0, 0.0
		ids, terms := map[float64]bool{}, map[float64]bool{}
		for _, m := range scrapeAll() {
			controllers += m["ringtail_controller"]
			led += m["ringtail_partitions_led"]
			ids[m["ringtail_controller_id"]] = true
			terms[m["ringtail_raft_term"]] = true
		}
		switch {
		case controllers != 1:
			return fmt.Errorf("%v brokers say they are the controller", controllers)
		case len(ids) != 1 || ids[-1]:
			return fmt.Errorf("controller ids %v", ids)
		case len(terms) != 1 || terms[0]:
			return fmt.Errorf("raft terms %v", terms)
		case led != float64(withLeader) || withLeader < 6:
			return fmt.Errorf("partitions led add up to %v, the metadata has %d with a leader", led, withLeader)
		}
		return nil
	})

	// Every series the Grafana dashboard queries exists on a cluster node.
	dashboard, err := os.ReadFile("../../deploy/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for k := range scrapeAll()[0] {
		name, _, _ := strings.Cut(k, "{")
		names[name] = true
	}
	for _, want := range regexp.MustCompile(`\b(?:ringtail|process)_[a-z_]+`).FindAllString(string(dashboard), -1) {
		if !names[want] {
			t.Errorf("deploy/grafana-dashboard.json queries %s, which the broker does not export", want)
		}
	}

	// acks=all produces wait for the followers: the leaders time that wait.
	cl, err := c.Client(kgo.RequiredAcks(kgo.AllISRAcks()), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const n = 20
	for i := 0; i < n; i++ {
		produceSync(t, cl, &kgo.Record{Value: []byte(fmt.Sprintf("r%d", i))})
	}
	var waits, waited float64
	for _, m := range scrapeAll() {
		waits += m["ringtail_committed_append_replication_seconds_count"]
		waited += m["ringtail_committed_append_replication_seconds_sum"]
	}
	if waits < n || waited <= 0 {
		t.Errorf("committed appends' replication time: %v observations, %vs in all; want >= %d acks=all produces and some time", waits, waited, n)
	}

	// Pause the controller: the other two elect a new one, which fences it; whether that or the
	// leaders' own AlterPartition shrinks the ISRs, the leaders count the changes.
	paused := int(scrapeAll()[0]["ringtail_controller_id"])
	if err := c.Broker(paused).Pause(); err != nil {
		t.Fatal(err)
	}
	defer c.Broker(paused).Resume()
	waitCluster(t, "ISR shrinks counted on the leaders", func() error {
		changes, under := 0.0, 0.0
		for id := 1; id <= 3; id++ {
			if id == paused {
				continue
			}
			m := scrape(t, "http://"+c.Broker(id).ExtraAddr("metrics")+"/metrics")
			changes += m["ringtail_isr_changes_total"]
			under += m["ringtail_under_replicated_partitions"]
		}
		if changes == 0 || under == 0 {
			return fmt.Errorf("isr changes %v, under-replicated partitions %v", changes, under)
		}
		return nil
	})
}
