package e2e

import (
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// ringtailCLI runs the binary with args and returns stdout, stderr and the exit status.
func ringtailCLI(t *testing.T, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	cmd := exec.Command(brokerBin, args...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		status = exit.ExitCode()
	case err != nil:
		t.Fatalf("ringtail %v: %v", args, err)
	}
	return out.String(), errOut.String(), status
}

// TestTopicCLI drives `ringtail topic create|list|describe|alter|delete` against a real broker,
// with flags before and after the arguments, and checks what each did through Kafka.
func TestTopicCLI(t *testing.T) {
	b := startBroker(t, withArgs("--auto-create-topics=false"))
	adm := b.Admin(t)
	topic := topicName(t, "cli")
	must := func(want string, args ...string) string {
		t.Helper()
		out, errOut, status := ringtailCLI(t, args...)
		if status != 0 || !strings.Contains(out, want) {
			t.Fatalf("ringtail %v: status %d, want 0 and %q in\n%s%s", args, status, want, out, errOut)
		}
		return out
	}

	must("topic "+topic+": created, 3 partitions, replication factor 1",
		"topic", "create", "--brokers", b.Addr(), topic, "--partitions", "3", "--config", "retention.ms=3600000")
	td, err := adm.ListTopics(ctxTimeout(t, opTimeout), topic)
	if err != nil || len(td[topic].Partitions) != 3 {
		t.Fatalf("after create: %v %v", td, err)
	}

	out := must(topic, "topic", "list", "--brokers", b.Addr())
	if !strings.HasPrefix(out, "TOPIC") || strings.Contains(out, "__consumer_offsets") {
		t.Errorf("topic list: want a table without internal topics:\n%s", out)
	}
	must("__consumer_offsets", "topic", "list", "--internal", "--brokers", b.Addr())

	cl := b.Client(t, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produceSync(t, cl, &kgo.Record{Partition: 1, Value: []byte("a")}, &kgo.Record{Partition: 1, Value: []byte("b")})
	out = must("retention.ms=3600000", "topic", "describe", topic, "--brokers", b.Addr())
	var row1 string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 8 && f[0] == "1" {
			row1 = line
		}
	}
	// PARTITION LEADER LEADER-EPOCH REPLICAS ISR OFFLINE START END
	if f := strings.Fields(row1); len(f) != 8 || f[1] != "1" || f[3] != "1" || f[4] != "1" || f[5] != "-" || f[6] != "0" || f[7] != "2" {
		t.Errorf("describe: partition 1 row %q, want leader 1, replicas 1, isr 1, offsets 0 to 2, in\n%s", row1, out)
	}

	must("now 5 partitions", "topic", "alter", "--brokers", b.Addr(), "--partitions", "5", topic)
	must("configs changed (1 set, 1 removed)", "topic", "alter", "--brokers", b.Addr(), topic,
		"--config", "max.message.bytes=2048", "--delete-config", "retention.ms")
	rc, err := adm.DescribeTopicConfigs(ctxTimeout(t, opTimeout), topic)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range rc[0].Configs {
		if c.Source == 1 {
			got[c.Key] = c.MaybeValue()
		}
	}
	if got["max.message.bytes"] != "2048" || got["retention.ms"] != "" {
		t.Errorf("configs set on the topic after alter: %v, want max.message.bytes=2048 and no retention.ms", got)
	}
	// A fresh client: franz-go serves a recent Metadata answer from its cache.
	if td, err := b.Admin(t).ListTopics(ctxTimeout(t, opTimeout), topic); err != nil || len(td[topic].Partitions) != 5 {
		t.Fatalf("after alter: %v %v", td, err)
	}

	// Failures: exit 1 with the broker's reason; bad usage: exit 2 with the usage.
	if _, errOut, status := ringtailCLI(t, "topic", "create", "--brokers", b.Addr(), topic); status != 1 || !strings.Contains(errOut, "TOPIC_ALREADY_EXISTS") {
		t.Errorf("creating an existing topic: status %d, stderr %q; want 1 and TOPIC_ALREADY_EXISTS", status, errOut)
	}
	if _, errOut, status := ringtailCLI(t, "topic", "alter", "--brokers", b.Addr(), "--partitions", "2", topic); status != 1 || !strings.Contains(errOut, "failed for "+topic) {
		t.Errorf("shrinking a topic: status %d, stderr %q; want 1", status, errOut)
	}
	if _, errOut, status := ringtailCLI(t, "topic", "create"); status != 2 || !strings.Contains(errOut, "Usage:") {
		t.Errorf("create without a topic: status %d, stderr %q; want 2 and the usage", status, errOut)
	}
	if _, _, status := ringtailCLI(t, "topic", "frobnicate"); status != 2 {
		t.Errorf("unknown subcommand: status %d, want 2", status)
	}

	must("topic "+topic+": deleted", "topic", "delete", topic, "--brokers", b.Addr())
	if td, err := b.Admin(t).ListTopics(ctxTimeout(t, opTimeout)); err != nil || td.Has(topic) {
		t.Fatalf("after delete: %v %v", td.Names(), err)
	}
}
