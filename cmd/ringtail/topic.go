package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/twmb/franz-go/pkg/kadm"
)

const topicUsage = `Usage:
  ringtail topic create   [--brokers host:port] [--partitions N] [--replication-factor N] [--config key=value]... TOPIC...
  ringtail topic list     [--brokers host:port] [--internal]
  ringtail topic describe [--brokers host:port] TOPIC...
  ringtail topic alter    [--brokers host:port] [--partitions N] [--config key=value]... [--delete-config key]... TOPIC...
  ringtail topic delete   [--brokers host:port] TOPIC...

create makes topics (-1: the broker's default partition count and replication factor).
list shows every topic with its partition count and replication factor.
describe shows each topic's configs set on it, then per partition its leader, leader epoch,
replicas, in-sync replicas, offline replicas, and start and end offsets.
alter grows a topic's partition count (it never shrinks) and sets or removes its configs.
delete removes topics and their data.
Every subcommand also takes --timeout (default 30s).
`

// runTopic is the `ringtail topic` admin command.
func runTopic(args []string, out io.Writer) int {
	sub, args, ok := subcommand("topic", topicUsage, args)
	if !ok {
		return 2
	}
	a := newAdminCmd("topic", sub, topicUsage)
	partitions := a.fs.Int("partitions", -1, "partition count (create: -1 is the broker's default; alter: the new, larger count)")
	rf := a.fs.Int("replication-factor", -1, "replicas per partition (create; -1: the broker's default)")
	internal := a.fs.Bool("internal", false, "list internal topics too (__consumer_offsets)")
	var configs, deletes listFlag
	a.fs.Var(&configs, "config", "a topic config as key=value (repeatable)")
	a.fs.Var(&deletes, "delete-config", "a topic config to remove (alter; repeatable)")
	switch sub {
	case "create", "list", "describe", "alter", "delete":
	default:
		return unknownSubcommand("topic", sub, topicUsage)
	}
	topics, ok := a.parse(args)
	if !ok {
		return 2
	}
	if sub != "list" && len(topics) == 0 {
		return a.usageError("name at least one topic")
	}
	set, err := parseConfigs(configs)
	if err != nil {
		return a.usageError("%v", err)
	}
	_, adm, ctx, closeClient, err := a.connect()
	if err != nil {
		return a.fail(err)
	}
	defer closeClient()
	switch sub {
	case "create":
		err = createTopics(ctx, adm, out, int32(*partitions), int16(*rf), set, topics)
	case "list":
		err = listTopics(ctx, adm, out, *internal)
	case "describe":
		err = describeTopics(ctx, adm, out, topics)
	case "alter":
		if *partitions < 0 && len(set) == 0 && len(deletes) == 0 {
			return a.usageError("say what to change: --partitions, --config or --delete-config")
		}
		err = alterTopics(ctx, adm, out, *partitions, set, deletes, topics)
	case "delete":
		err = deleteTopics(ctx, adm, out, topics)
	}
	if err != nil {
		return a.fail(err)
	}
	return 0
}

// parseConfigs reads --config key=value flags.
func parseConfigs(kvs []string) (map[string]*string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	out := make(map[string]*string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--config %q: want key=value", kv)
		}
		out[k] = &v
	}
	return out, nil
}

// errNoAnswer: the broker's response left out a topic the request named.
var errNoAnswer = errors.New("the broker's answer does not mention it")

// topicResults reports, for every topic a request named, the broker's answer: done (stdout) or
// the error (stderr). Any error makes the command fail, after every topic was reported.
type topicResults struct {
	out    io.Writer
	failed []string
}

func (r *topicResults) report(topic, what string, err error, msg string) {
	if err != nil {
		if msg != "" {
			err = fmt.Errorf("%w: %s", err, msg)
		}
		fmt.Fprintf(os.Stderr, "topic %s: %v\n", topic, err)
		r.failed = append(r.failed, topic)
		return
	}
	fmt.Fprintf(r.out, "topic %s: %s\n", topic, what)
}

func (r *topicResults) err() error {
	if len(r.failed) == 0 {
		return nil
	}
	return fmt.Errorf("failed for %s", strings.Join(r.failed, ", "))
}

func createTopics(ctx context.Context, adm *kadm.Client, out io.Writer, partitions int32, rf int16, configs map[string]*string, topics []string) error {
	resps, err := adm.CreateTopics(ctx, partitions, rf, configs, topics...)
	if err != nil {
		return err
	}
	r := topicResults{out: out}
	for _, t := range topics {
		resp, ok := resps[t]
		if !ok {
			r.report(t, "", errNoAnswer, "")
			continue
		}
		r.report(t, fmt.Sprintf("created, %d partitions, replication factor %d", resp.NumPartitions, resp.ReplicationFactor), resp.Err, resp.ErrMessage)
	}
	return r.err()
}

func listTopics(ctx context.Context, adm *kadm.Client, out io.Writer, internal bool) error {
	var td kadm.TopicDetails
	var err error
	if internal {
		td, err = adm.ListTopicsWithInternal(ctx)
	} else {
		td, err = adm.ListTopics(ctx)
	}
	if err != nil {
		return err
	}
	if err := td.Error(); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITIONS\tREPLICATION FACTOR\tID")
	for _, t := range td.Sorted() {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", t.Topic, len(t.Partitions), t.Partitions.NumReplicas(), t.ID)
	}
	return tw.Flush()
}

func describeTopics(ctx context.Context, adm *kadm.Client, out io.Writer, topics []string) error {
	td, err := adm.ListTopicsWithInternal(ctx, topics...)
	if err != nil {
		return err
	}
	cfgs, err := adm.DescribeTopicConfigs(ctx, topics...)
	if err != nil {
		return err
	}
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return err
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return err
	}
	r := topicResults{out: out}
	for i, name := range topics {
		t, ok := td[name]
		if !ok || t.Err != nil {
			err := t.Err
			if !ok {
				err = errNoAnswer
			}
			r.report(name, "", err, "")
			continue
		}
		if i > 0 {
			fmt.Fprintln(out)
		}
		fmt.Fprintf(out, "topic %s: %d partitions, replication factor %d, id %s\n", name, len(t.Partitions), t.Partitions.NumReplicas(), t.ID)
		if rc, err := cfgs.On(name, nil); err == nil && rc.Err == nil {
			var set []string
			for _, c := range rc.Configs {
				if c.Source == 1 { // DYNAMIC_TOPIC_CONFIG: set on the topic
					set = append(set, c.Key+"="+c.MaybeValue())
				}
			}
			slices.Sort(set)
			if len(set) > 0 {
				fmt.Fprintf(out, "configs: %s\n", strings.Join(set, ", "))
			}
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PARTITION\tLEADER\tLEADER EPOCH\tREPLICAS\tISR\tOFFLINE\tSTART\tEND")
		for _, p := range t.Partitions.Sorted() {
			start, end := "-", "-"
			if o, ok := starts.Lookup(name, p.Partition); ok && o.Err == nil {
				start = fmt.Sprint(o.Offset)
			}
			if o, ok := ends.Lookup(name, p.Partition); ok && o.Err == nil {
				end = fmt.Sprint(o.Offset)
			}
			fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n", p.Partition, p.Leader, p.LeaderEpoch,
				ids(p.Replicas), ids(p.ISR), ids(p.OfflineReplicas), start, end)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return r.err()
}

// ids prints broker ids as 1,2,3 (- for none).
func ids(v []int32) string {
	if len(v) == 0 {
		return "-"
	}
	s := make([]string, len(v))
	for i, id := range v {
		s[i] = fmt.Sprint(id)
	}
	return strings.Join(s, ",")
}

func alterTopics(ctx context.Context, adm *kadm.Client, out io.Writer, partitions int, set map[string]*string, deletes []string, topics []string) error {
	r := topicResults{out: out}
	if partitions >= 0 {
		resps, err := adm.UpdatePartitions(ctx, partitions, topics...)
		if err != nil {
			return err
		}
		for _, t := range topics {
			resp, ok := resps[t]
			if !ok {
				r.report(t, "", errNoAnswer, "")
				continue
			}
			r.report(t, fmt.Sprintf("now %d partitions", partitions), resp.Err, resp.ErrMessage)
		}
	}
	if len(set) > 0 || len(deletes) > 0 {
		var alters []kadm.AlterConfig
		keys := make([]string, 0, len(set))
		for k := range set {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			alters = append(alters, kadm.AlterConfig{Op: kadm.SetConfig, Name: k, Value: set[k]})
		}
		for _, k := range deletes {
			alters = append(alters, kadm.AlterConfig{Op: kadm.DeleteConfig, Name: k})
		}
		resps, err := adm.AlterTopicConfigs(ctx, alters, topics...)
		if err != nil {
			return err
		}
		for _, t := range topics {
			resp, err := resps.On(t, nil)
			if err == nil {
				err = resp.Err
			}
			r.report(t, fmt.Sprintf("configs changed (%d set, %d removed)", len(set), len(deletes)), err, resp.ErrMessage)
		}
	}
	return r.err()
}

func deleteTopics(ctx context.Context, adm *kadm.Client, out io.Writer, topics []string) error {
	resps, err := adm.DeleteTopics(ctx, topics...)
	if err != nil {
		return err
	}
	r := topicResults{out: out}
	for _, t := range topics {
		resp, ok := resps[t]
		if !ok {
			r.report(t, "", errNoAnswer, "")
			continue
		}
		r.report(t, "deleted", resp.Err, resp.ErrMessage)
	}
	return r.err()
}
