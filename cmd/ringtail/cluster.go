package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const clusterUsage = `Usage:
  ringtail cluster status [--brokers host:port]
  ringtail cluster add-node [--brokers host:port] --id N --raft-addr host:port [--non-voting]
  ringtail cluster remove-node [--brokers host:port] --id N

status shows the brokers (live or fenced), the controller, the metadata log's Raft term and
members, and the partitions without a leader or with fewer in-sync replicas than replicas.

add-node adds node N to the metadata cluster (a voter, or with --non-voting a member that follows
the metadata without voting); then start it with the same --peers as the others plus
--node-id N --raft-addr host:port --join (and --non-voting if so added).

remove-node removes node N from the metadata cluster's membership; stop it first.
Every subcommand also takes --timeout (default 30s).
`

// runCluster is the `ringtail cluster` admin command.
func runCluster(args []string, out io.Writer) int {
	sub, args, ok := subcommand("cluster", clusterUsage, args)
	if !ok {
		return 2
	}
	switch sub {
	case "status", "add-node", "remove-node":
	default:
		return unknownSubcommand("cluster", sub, clusterUsage)
	}
	a := newAdminCmd("cluster", sub, clusterUsage)
	id := a.fs.Int("id", 0, "node id (add-node, remove-node)")
	raftAddr := a.fs.String("raft-addr", "", "the new node's Raft address (add-node)")
	nonVoting := a.fs.Bool("non-voting", false, "add the node as a non-voting member (add-node)")
	if rest, ok := a.parse(args); !ok {
		return 2
	} else if len(rest) > 0 {
		return a.usageError("unexpected argument %q", rest[0])
	}
	cl, _, ctx, closeClient, err := a.connect()
	if err != nil {
		return a.fail(err)
	}
	defer closeClient()
	timeout := a.timeout

	var cmdErr error
	switch sub {
	case "status":
		cmdErr = clusterStatus(ctx, cl, out)
	case "add-node":
		cmdErr = addNode(ctx, cl, int32(*id), *raftAddr, !*nonVoting, *timeout)
		if cmdErr == nil {
			fmt.Fprintf(out, "node %d added; start it with --node-id %d --raft-addr %s --join%s and the cluster's --peers\n",
				*id, *id, *raftAddr, map[bool]string{true: " --non-voting"}[*nonVoting])
		}
	case "remove-node":
		cmdErr = removeNode(ctx, cl, int32(*id))
		if cmdErr == nil {
			fmt.Fprintf(out, "node %d removed from the metadata cluster\n", *id)
		}
	}
	if cmdErr != nil {
		return a.fail(cmdErr)
	}
	return 0
}

func clusterStatus(ctx context.Context, cl *kgo.Client, out io.Writer) error {
	adm := kadm.NewClient(cl)
	md, err := adm.Metadata(ctx)
	if err != nil {
		return err
	}
	req := kmsg.NewPtrDescribeQuorumRequest()
	rt := kmsg.NewDescribeQuorumRequestTopic()
	rt.Topic = "__cluster_metadata"
	rt.Partitions = []kmsg.DescribeQuorumRequestTopicPartition{kmsg.NewDescribeQuorumRequestTopicPartition()}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "cluster %s, controller %d\n", md.Cluster, md.Controller)
	var voters, observers []int32
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		fmt.Fprintf(out, "metadata quorum: %v (a single node)\n", err)
	} else if len(resp.Topics) == 1 && len(resp.Topics[0].Partitions) == 1 {
		p := resp.Topics[0].Partitions[0]
		for _, v := range p.CurrentVoters {
			voters = append(voters, v.ReplicaID)
		}
		for _, o := range p.Observers {
			observers = append(observers, o.ReplicaID)
		}
		fmt.Fprintf(out, "metadata quorum: leader %d, raft term %d, voters %v, non-voting %v\n", p.LeaderID, p.LeaderEpoch, voters, observers)
	}

	dc := kmsg.NewPtrDescribeClusterRequest()
	dc.Version, dc.IncludeFencedBrokers = 2, true
	dresp, err := dc.RequestWith(ctx, cl)
	if err != nil {
		return err
	}
	epochs := map[int32]string{}
	var live []int32
	for _, b := range dresp.Brokers {
		if !b.IsFenced {
			live = append(live, b.NodeID)
		}
	}
	if cfgs, err := adm.DescribeBrokerConfigs(ctx, live...); err == nil { // each broker's own answer
		for _, rc := range cfgs {
			id, _ := strconv.Atoi(rc.Name)
			for _, c := range rc.Configs {
				if c.Key == "ringtail.broker.epoch" {
					epochs[int32(id)] = c.MaybeValue()
				}
			}
		}
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nBROKER\tADDRESS\tRACK\tBROKER EPOCH\tSTATE")
	listed := map[int32]bool{}
	for _, b := range dresp.Brokers {
		listed[b.NodeID] = true
		rack, state, epoch := "-", "live", "-"
		if b.Rack != nil {
			rack = *b.Rack
		}
		if b.IsFenced {
			state = "fenced"
		}
		if e, ok := epochs[b.NodeID]; ok {
			epoch = e
		}
		if b.NodeID == dresp.ControllerID {
			state += ", controller"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", b.NodeID, net.JoinHostPort(b.Host, strconv.Itoa(int(b.Port))), rack, epoch, state)
	}
	for _, id := range append(voters, observers...) {
		if !listed[id] {
			fmt.Fprintf(tw, "%d\t-\t-\t-\tmetadata member, never registered\n", id)
		}
	}
	tw.Flush()

	var troubled []string
	for _, t := range md.Topics.Sorted() {
		for _, p := range t.Partitions.Sorted() {
			switch {
			case p.Leader < 0:
				troubled = append(troubled, fmt.Sprintf("%s-%d\tno leader\treplicas %v, isr %v", t.Topic, p.Partition, p.Replicas, p.ISR))
			case len(p.ISR) < len(p.Replicas):
				troubled = append(troubled, fmt.Sprintf("%s-%d\tshort isr\tleader %d, replicas %v, isr %v, offline %v", t.Topic, p.Partition, p.Leader, p.Replicas, p.ISR, p.OfflineReplicas))
			}
		}
	}
	if len(troubled) == 0 {
		fmt.Fprintln(out, "\nevery partition has a leader and all its replicas in sync")
		return nil
	}
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nPARTITION\tPROBLEM\tDETAIL")
	const most = 20
	for _, l := range troubled[:min(most, len(troubled))] {
		fmt.Fprintln(tw, l)
	}
	if len(troubled) > most {
		fmt.Fprintf(tw, "… and %d more\n", len(troubled)-most)
	}
	return tw.Flush()
}

func addNode(ctx context.Context, cl *kgo.Client, id int32, raftAddr string, voter bool, timeout time.Duration) error {
	host, port, err := net.SplitHostPort(raftAddr)
	if err != nil || id < 1 {
		return fmt.Errorf("need --id (1 or more) and --raft-addr host:port")
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return fmt.Errorf("raft-addr %q: %w", raftAddr, err)
	}
	req := kmsg.NewPtrAddRaftVoterRequest()
	req.VoterID, req.TimeoutMillis = id, int32(timeout.Milliseconds())
	l := kmsg.NewAddRaftVoterRequestListener()
	l.Name, l.Host, l.Port = "RAFT", host, uint16(p)
	if !voter {
		l.Name = "RAFT_NON_VOTING"
	}
	req.Listeners = append(req.Listeners, l)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return err
	}
	return responseError(resp.ErrorCode, resp.ErrorMessage)
}

func removeNode(ctx context.Context, cl *kgo.Client, id int32) error {
	if id < 1 {
		return fmt.Errorf("need --id (1 or more)")
	}
	req := kmsg.NewPtrRemoveRaftVoterRequest()
	req.VoterID = id
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return err
	}
	return responseError(resp.ErrorCode, resp.ErrorMessage)
}

func responseError(code int16, msg *string) error {
	err := kerr.ErrorForCode(code)
	if err != nil && msg != nil {
		return fmt.Errorf("%w: %s", err, *msg)
	}
	return err
}
