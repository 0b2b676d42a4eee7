package e2e

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ringtail/ringtail/test/cluster"
)

// failoverPoll is how often the failover measurement asks a live broker for Metadata: the
// resolution of its timings.
const failoverPoll = 50 * time.Millisecond

// failoverClientBackoff is the measurement producer's retry backoff and least time between
// metadata refreshes: Kafka's Java client's retry.backoff.ms (100 ms), where franz-go's
// defaults (250 ms doubling up to 5 s, metadata at most every 5 s) would measure the client's
// patience rather than the cluster.
const failoverClientBackoff = 100 * time.Millisecond

// TestClusterFailover is a measurement, not a test (`make cluster-failover` runs it; it is
// skipped unless E2E_FAILOVER_ROUNDS is set): three brokers with default settings. Each round
// kills, with kill -9, first a partition leader that is not the controller, then the
// controller, each on a new RF=3 topic, and measures from the kill the time until a live broker
// names another controller (controller kills), until every partition of the topic is led by a
// live broker (Metadata from a live broker every 50 ms), and until an acks=all produce to
// each partition the killed broker led is acknowledged (a franz-go producer sending one
// record to each of them right after the kill, retrying every 100 ms). Then it restarts the
// killed broker and waits until it is live (unfenced) again. It prints each kill and the
// medians, and writes them to $E2E_FAILOVER_OUT when set. It asserts only that the cluster
// recovers, never how fast.
//
// A topic per kill: a fresh topic has every broker in every ISR and two leaderships on each,
// so every kill measures the same thing without waiting for the restarted broker to catch up
// and rejoin the ISRs of an older one. The producer is franz-go's default, idempotent.
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
	say("cluster failover: 3 brokers, default settings; %d rounds, each a kill -9 of a partition leader that is not the controller, then of the controller, each on a new topic of %d partitions x 3 replicas; Metadata polled every %v from a live broker; an idempotent acks=all producer (franz-go, retry backoff and metadata min age %v) sends one record to each partition the killed broker led",
		rounds, partitions, failoverPoll, failoverClientBackoff)
	say("%-5s %-10s %-6s %-4s %-15s %-18s %-18s %s", "round", "killed", "broker", "led", "new controller", "leaderships moved", "acks=all produced", "back (restart to unfenced)")
	var toController, ctrlMoved, ctrlProduced, leaderMoved, leaderProduced []time.Duration
	for round := 1; round <= rounds; round++ {
		for _, controller := range []bool{false, true} {
			topic := topicName(t, fmt.Sprintf("%d-%v", round, controller))
			createRF3(t, c, topic, partitions)
			r := failoverRound(t, c, topic, controller)
			kind, newCtrl := "leader", "-"
			if controller {
				kind, newCtrl = "controller", r.controller.Round(time.Millisecond).String()
				toController = append(toController, r.controller)
				ctrlMoved, ctrlProduced = append(ctrlMoved, r.moved), append(ctrlProduced, r.produced)
			} else {
				leaderMoved, leaderProduced = append(leaderMoved, r.moved), append(leaderProduced, r.produced)
			}
			say("%-5d %-10s %-6d %-4d %-15s %-18v %-18v %v", round, kind, r.killed, r.led, newCtrl,
				r.moved.Round(time.Millisecond), r.produced.Round(time.Millisecond), r.back.Round(time.Millisecond))
		}
	}
	ms := func(ds []time.Duration) time.Duration { return median(ds).Round(time.Millisecond) }
	say("median over %d rounds, kill -9 of a leader that is not the controller: leaderships moved %v, acks=all produced %v",
		rounds, ms(leaderMoved), ms(leaderProduced))
	say("median over %d rounds, kill -9 of the controller: new controller %v, leaderships moved %v, acks=all produced %v",
		rounds, ms(toController), ms(ctrlMoved), ms(ctrlProduced))
	if out := os.Getenv("E2E_FAILOVER_OUT"); out != "" {
		header := fmt.Sprintf("date: %s\ncommit: %s\n", time.Now().UTC().Format(time.RFC3339), os.Getenv("E2E_FAILOVER_COMMIT"))
		if err := os.WriteFile(out, []byte(header+report.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("written to %s", out)
	}
}

type failoverTimes struct {
	killed, led                       int32 // the killed broker and how many partitions it led
	controller, moved, produced, back time.Duration
}

// failoverRound kills the controller (controller) or a partition leader that is not the
// controller, measures, restarts it and waits until it is live again.
func failoverRound(t *testing.T, c *cluster.Cluster, topic string, controller bool) failoverTimes {
	t.Helper()
	md := rawMetadata(t, c.Broker(1), topic)
	ctrl := md.ControllerID
	if ctrl < 1 {
		t.Fatalf("broker 1 names controller %d", ctrl)
	}
	victim := ctrl
	if !controller {
		victim = ctrl%3 + 1 // every broker leads two of the fresh topic's partitions
	}
	var r failoverTimes
	r.killed = victim
	var led []int32
	for _, p := range md.Topics[0].Partitions {
		if p.Leader == victim {
			led = append(led, p.Partition)
		}
	}
	r.led = int32(len(led))
	if len(led) == 0 {
		t.Fatalf("broker %d leads no partition of %s", victim, topic)
	}
	observer := c.Broker(int(victim)%3 + 1)
	rc := dialRaw(t, observer.Addr())
	pr := newFailoverProducer(t, c, topic, led)
	killed := c.Broker(int(victim))
	start := time.Now()
	if err := killed.Kill(); err != nil {
		t.Fatal(err)
	}
	produced := pr.produce(start)
	tick := time.NewTicker(failoverPoll)
	defer tick.Stop()
	for (controller && r.controller == 0) || r.moved == 0 {
		if time.Since(start) > clusterWait {
			t.Fatalf("not recovered %v after kill -9 of broker %d (controller %d): new controller after %v, leaderships moved after %v",
				clusterWait, victim, ctrl, r.controller, r.moved)
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
			return p.Leader == victim || p.Leader < 0
		}) {
			r.moved = at
		}
	}
	select {
	case r.produced = <-produced:
	case <-time.After(clusterWait):
		t.Fatalf("no acks=all produce acknowledged on every partition broker %d led, %v after its kill", victim, clusterWait)
	}
	start = time.Now()
	if err := killed.Start(ctxTimeout(t, clusterWait)); err != nil {
		t.Fatal(err)
	}
	waitBrokers(t, c, observer, []int32{1, 2, 3})
	r.back = time.Since(start)
	return r
}

// failoverProducer is an acks=all producer of the partitions a killed broker led, connected
// and with its metadata loaded before the kill, as a running application's would be.
type failoverProducer struct {
	t          *testing.T
	cl         *kgo.Client
	partitions []int32
}

func newFailoverProducer(t *testing.T, c *cluster.Cluster, topic string, partitions []int32) *failoverProducer {
	t.Helper()
	cl := c.ClientT(t, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RetryBackoffFn(func(int) time.Duration { return failoverClientBackoff }),
		kgo.MetadataMinAge(failoverClientBackoff), kgo.RecordRetries(math.MaxInt32),
		kgo.RecordDeliveryTimeout(clusterWait))
	pr := &failoverProducer{t: t, cl: cl, partitions: partitions}
	for _, p := range partitions {
		if err := cl.ProduceSync(ctxTimeout(t, opTimeout), &kgo.Record{Partition: p, Value: []byte("before")}).FirstErr(); err != nil {
			t.Fatalf("producing to %s-%d before the kill: %v", topic, p, err)
		}
	}
	return pr
}

// produce sends one record to each partition and sends on the channel it returns how long
// after start the last of them was acknowledged (the client retries until each is).
func (pr *failoverProducer) produce(start time.Time) <-chan time.Duration {
	done := make(chan time.Duration, 1)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var last time.Duration
	for _, p := range pr.partitions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < clusterWait {
				ctx, cancel := context.WithTimeout(context.Background(), clusterWait)
				err := pr.cl.ProduceSync(ctx, &kgo.Record{Partition: p, Value: []byte("after")}).FirstErr()
				cancel()
				if err == nil {
					at := time.Since(start)
					mu.Lock()
					last = max(last, at)
					mu.Unlock()
					return
				}
				pr.t.Logf("acks=all produce to partition %d: %v (retrying)", p, err)
				time.Sleep(failoverClientBackoff)
			}
		}()
	}
	go func() {
		wg.Wait()
		done <- last
	}()
	return done
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
