package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const groupUsage = `Usage:
  ringtail group list [--brokers host:port]
  ringtail group describe [--brokers host:port] GROUP...

describe shows each group's state, members, assignments, committed offsets and lag.
`

// runGroup is the `ringtail group` admin command: it talks to any Kafka-compatible broker.
func runGroup(args []string, out io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, groupUsage)
		return 2
	}
	fs := flag.NewFlagSet("ringtail group "+args[0], flag.ContinueOnError)
	brokers := fs.String("brokers", "127.0.0.1:9092", "comma-separated seed brokers")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(*brokers, ",")...))
	if err != nil {
		fmt.Fprintf(os.Stderr, "ringtail group: %v\n", err)
		return 1
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	switch args[0] {
	case "list":
		groups, err := adm.ListGroups(ctx)
		if err != nil {
			fmt.Fprintf(os.Stderr, "ringtail group list: %v\n", err)
			return 1
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "GROUP\tSTATE\tPROTOCOL TYPE")
		for _, g := range groups.Sorted() {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", g.Group, g.State, g.ProtocolType)
		}
		tw.Flush()
		return 0
	case "describe":
		if fs.NArg() == 0 {
			fmt.Fprint(os.Stderr, groupUsage)
			return 2
		}
		lags, err := adm.Lag(ctx, fs.Args()...)
		if err != nil {
			fmt.Fprintf(os.Stderr, "ringtail group describe: %v\n", err)
			return 1
		}
		status := 0
		for _, name := range fs.Args() {
			l, ok := lags[name]
			if !ok {
				fmt.Fprintf(os.Stderr, "group %s: no answer\n", name)
				status = 1
				continue
			}
			if err := l.Error(); err != nil {
				fmt.Fprintf(os.Stderr, "group %s: %v\n", name, err)
				status = 1
				continue
			}
			printGroupLag(out, l)
		}
		return status
	default:
		fmt.Fprintf(os.Stderr, "ringtail group: unknown subcommand %q\n\n%s", args[0], groupUsage)
		return 2
	}
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
