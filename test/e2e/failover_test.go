package e2e

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ringtail/ringtail/test/cluster"
)

// failoverPoll is how often the failover measurement asks a live broker for Metadata: the
// resolution of its timings.
const failoverPoll = 50 * time.Millisecond

// TestClusterFailover is a measurement, not a test (`make cluster-failover` runs it; it is
// skipped unless E2E_FAILOVER_ROUNDS is set): three brokers with default settings; each round
// creates an RF=3 topic, kills the controller with kill -9, and measures from the kill the time
// until a live broker names another controller and until every partition of the topic is led by
// a live broker (Metadata from a live broker every 50 ms), then restarts the killed broker and
// waits until it is live (unfenced) again. It prints each round and the medians, and writes
// them to $E2E_FAILOVER_OUT when set. It asserts only that the cluster recovers, never how fast.
//
// A topic per round: until partition data is replicated, a restarted broker never rejoins an
// ISR, so after a few kills an old topic's partitions are down to one in-sync replica and go
// offline with it (no unclean election) instead of moving. A fresh topic has every broker in
// every ISR and two leaderships on each, so every round measures the same thing.
func TestClusterFailover(t *testing.T) {
	rounds, _ := strconv.Atoi(os.Getenv("E2E_FAILOVER_ROUNDS"))
	if rounds < 1 {
		t.Skip("a measurement: `make cluster-failover` runs it (E2E_FAILOVER_ROUNDS=N)")
	}
	c := startCluster3(t)
	const partitions = 6

	var report strings.Builder
	say := func(format string, args ...any) {
		line := fmt.Sprintf(format, args...)
		t.Log(line)
		report.WriteString(line + "\n")
	}
	say("cluster failover: 3 brokers, default settings; each round a new topic of %d partitions x 3 replicas, then kill -9 of the controller; %d rounds; Metadata polled every %v from a live broker",
		partitions, rounds, failoverPoll)
	say("%-5s %-10s %-8s %-16s %-18s %s", "round", "controller", "led", "new controller", "leaderships moved", "back (restart to unfenced)")
	var toController, toMoved []time.Duration
	for round := 1; round <= rounds; round++ {
		topic := topicName(t, strconv.Itoa(round))
		createRF3(t, c, topic, partitions)
		r := failoverRound(t, c, topic)
		toController, toMoved = append(toController, r.controller), append(toMoved, r.moved)
		say("%-5d %-10d %-8d %-16v %-18v %v", round, r.killed, r.led, r.controller.Round(time.Millisecond),
			r.moved.Round(time.Millisecond), r.back.Round(time.Millisecond))
	}
	say("median over %d rounds: new controller %v, leaderships moved %v", rounds,
		median(toController).Round(time.Millisecond), median(toMoved).Round(time.Millisecond))
	if out := os.Getenv("E2E_FAILOVER_OUT"); out != "" {
		header := fmt.Sprintf("date: %s\ncommit: %s\n", time.Now().UTC().Format(time.RFC3339), os.Getenv("E2E_FAILOVER_COMMIT"))
		if err := os.WriteFile(out, []byte(header+report.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("written to %s", out)
	}
}

type failoverTimes struct {
	killed, led             int32 // the killed controller and how many partitions it led
	controller, moved, back time.Duration
}

// failoverRound kills the controller, measures, restarts it and waits until it is live again.
func failoverRound(t *testing.T, c *cluster.Cluster, topic string) failoverTimes {
	t.Helper()
	md := rawMetadata(t, c.Broker(1), topic)
	ctrl := md.ControllerID
	if ctrl < 1 {
		t.Fatalf("broker 1 names controller %d", ctrl)
	}
	var r failoverTimes
	r.killed = ctrl
	for _, p := range md.Topics[0].Partitions {
		if p.Leader == ctrl {
			r.led++
		}
	}
	observer := c.Broker(int(ctrl)%3 + 1)
	rc := dialRaw(t, observer.Addr())
	killed := c.Broker(int(ctrl))
	start := time.Now()
	if err := killed.Kill(); err != nil {
		t.Fatal(err)
	}
	tick := time.NewTicker(failoverPoll)
	defer tick.Stop()
	for r.controller == 0 || r.moved == 0 {
		if time.Since(start) > clusterWait {
			t.Fatalf("not recovered %v after kill -9 of controller %d: new controller after %v, leaderships moved after %v",
				clusterWait, ctrl, r.controller, r.moved)
		}
		<-tick.C
		md, err := metadataRaw(rc, topic)
		if err != nil {
			t.Fatalf("Metadata from broker %d: %v", observer.ID(), err)
		}
		at := time.Since(start)
		if r.controller == 0 && md.ControllerID >= 1 && md.ControllerID != ctrl {
			r.controller = at
		}
		if r.moved == 0 && !slices.ContainsFunc(md.Topics[0].Partitions, func(p kmsg.MetadataResponseTopicPartition) bool {
			return p.Leader == ctrl || p.Leader < 0
		}) {
			r.moved = at
		}
	}
	start = time.Now()
	if err := killed.Start(ctxTimeout(t, clusterWait)); err != nil {
		t.Fatal(err)
	}
	waitBrokers(t, c, observer, []int32{1, 2, 3})
	r.back = time.Since(start)
	return r
}

// rawMetadata asks broker b, over a connection of its own, for topic's metadata.
func rawMetadata(t *testing.T, b *cluster.Broker, topic string) *kmsg.MetadataResponse {
	t.Helper()
	md, err := metadataRaw(dialRaw(t, b.Addr()), topic)
	if err != nil {
		t.Fatalf("Metadata from broker %d: %v", b.ID(), err)
	}
	return md
}

// metadataRaw sends one Metadata request for topic on rc: straight to that broker, no client
// cache or retries between the broker's view and the measurement.
func metadataRaw(rc *rawConn, topic string) (*kmsg.MetadataResponse, error) {
	md, err := metadataRawTopics(rc, []string{topic})
	if err != nil {
		return nil, err
	}
	if len(md.Topics) != 1 || md.Topics[0].ErrorCode != 0 {
		return nil, fmt.Errorf("topic %s missing or in error: %+v", topic, md.Topics)
	}
	return md, nil
}

// metadataRawTopics sends one Metadata request (v7: leader epochs, offline replicas) for topics
// (nil: every topic) on rc.
func metadataRawTopics(rc *rawConn, topics []string) (*kmsg.MetadataResponse, error) {
	req := kmsg.NewPtrMetadataRequest()
	req.Version = 7
	for _, topic := range topics {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(topic)
		req.Topics = append(req.Topics, rt)
	}
	resp, err := rc.roundTrip(req, 10*time.Second)
	if err != nil {
		return nil, err
	}
	return resp.(*kmsg.MetadataResponse), nil
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
