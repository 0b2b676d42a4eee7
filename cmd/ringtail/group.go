package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/twmb/franz-go/pkg/kadm"
)

const groupUsage = `Usage:
  ringtail group list     [--brokers host:port]
  ringtail group describe [--brokers host:port] GROUP...

list shows every consumer group with its state and protocol type.
describe shows each group's state, members, assignments, committed offsets and lag.
Every subcommand also takes --timeout (default 30s).
`

// runGroup is the `ringtail group` admin command: it talks to any Kafka-compatible broker.
func runGroup(args []string, out io.Writer) int {
	sub, args, ok := subcommand("group", groupUsage, args)
	if !ok {
		return 2
	}
	if sub != "list" && sub != "describe" {
		return unknownSubcommand("group", sub, groupUsage)
	}
	a := newAdminCmd("group", sub, groupUsage)
	groups, ok := a.parse(args)
	if !ok {
		return 2
	}
	_, adm, ctx, closeClient, err := a.connect()
	if err != nil {
		return a.fail(err)
	}
	defer closeClient()

	switch sub {
	case "list":
		listed, err := adm.ListGroups(ctx)
		if err != nil {
			return a.fail(err)
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "GROUP\tSTATE\tPROTOCOL TYPE")
		for _, g := range listed.Sorted() {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", g.Group, g.State, g.ProtocolType)
		}
		tw.Flush()
		return 0
	case "describe":
		if len(groups) == 0 {
			return a.usageError("name at least one group")
		}
		lags, err := adm.Lag(ctx, groups...)
		if err != nil {
			return a.fail(err)
		}
		status := 0
		for _, name := range groups {
			l, ok := lags[name]
			if !ok {
				status = a.fail(fmt.Errorf("group %s: %w", name, errNoAnswer))
				continue
			}
			if err := l.Error(); err != nil {
				status = a.fail(fmt.Errorf("group %s: %w", name, err))
				continue
			}
			printGroupLag(out, l)
		}
		return status
	}
	return 0
}

func printGroupLag(out io.Writer, l kadm.DescribedGroupLag) {
	fmt.Fprintf(out, "group %s: state %s, protocol %s/%s, %d member(s), total lag %d\n",
		l.Group, l.State, l.ProtocolType, l.Protocol, len(l.Members), l.Lag.Total())
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tCOMMITTED\tEND\tLAG\tMEMBER\tCLIENT\tHOST")
	for _, m := range l.Lag.Sorted() {
		member, client, host := "-", "-", "-"
		if m.Member != nil {
			member, client, host = m.Member.MemberID, m.Member.ClientID, m.Member.ClientHost
		}
		committed := "-"
		if m.Commit.At >= 0 {
			committed = fmt.Sprint(m.Commit.At)
		}
		lag := fmt.Sprint(m.Lag)
		if m.Err != nil {
			lag = "error: " + m.Err.Error()
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%s\t%s\t%s\n", m.Topic, m.Partition, committed, m.End.Offset, lag, member, client, host)
	}
	tw.Flush()
}
