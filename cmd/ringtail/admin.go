package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The admin commands (`ringtail topic|group|cluster SUBCOMMAND`) share one style: the same
// --brokers and --timeout flags, flags before or after the arguments, tables with upper-case
// headers on stdout, errors as `ringtail <command> <subcommand>: <error>` on stderr, and exit
// status 0 (done), 1 (failed) or 2 (bad usage). They talk Kafka, so they work against any
// broker of the cluster (and mostly against any Kafka-compatible broker).

// adminCmd is one admin subcommand being run.
type adminCmd struct {
	name    string // "topic create"
	usage   string // the command's usage text, printed on a usage error
	fs      *flag.FlagSet
	brokers *string
	timeout *time.Duration
}

// defaultAdminTimeout bounds an admin command unless --timeout says otherwise.
const defaultAdminTimeout = 30 * time.Second

func newAdminCmd(command, sub, usage string) *adminCmd {
	fs := flag.NewFlagSet("ringtail "+command+" "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // parse errors are reported once, with the usage, by parse
	a := &adminCmd{name: command + " " + sub, usage: usage, fs: fs}
	a.brokers = fs.String("brokers", "127.0.0.1:9092", "comma-separated seed brokers (host:port)")
	a.timeout = fs.Duration("timeout", defaultAdminTimeout, "give up after this long")
	return a
}

// parse parses args, flags and arguments in any order, and returns the arguments; ok false
// means a usage error was reported (exit 2).
func (a *adminCmd) parse(args []string) (positional []string, ok bool) {
	for {
		if err := a.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprint(os.Stdout, a.usage)
				a.fs.SetOutput(os.Stdout)
				a.fs.PrintDefaults()
				return nil, false
			}
			a.usageError("%v", err)
			return nil, false
		}
		if a.fs.NArg() == 0 {
			return positional, true
		}
		positional = append(positional, a.fs.Arg(0))
		args = a.fs.Args()[1:]
	}
}

// usageError reports bad usage with the command's usage text; the caller exits 2.
func (a *adminCmd) usageError(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "ringtail %s: %s\n\n%s", a.name, fmt.Sprintf(format, args...), a.usage)
	return 2
}

// fail reports a failed command; the caller exits 1.
func (a *adminCmd) fail(err error) int {
	fmt.Fprintf(os.Stderr, "ringtail %s: %v\n", a.name, err)
	return 1
}

// connect returns a client of the seed brokers and a context bounded by --timeout; close
// releases both.
func (a *adminCmd) connect() (cl *kgo.Client, adm *kadm.Client, ctx context.Context, closeFn func(), err error) {
	cl, err = kgo.NewClient(kgo.SeedBrokers(strings.Split(*a.brokers, ",")...))
	if err != nil {
		return nil, nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *a.timeout)
	return cl, kadm.NewClient(cl), ctx, func() { cancel(); cl.Close() }, nil
}

// subcommand splits `ringtail COMMAND SUBCOMMAND ...` args; ok false: usage printed (exit 2).
func subcommand(command, usage string, args []string) (sub string, rest []string, ok bool) {
	if len(args) == 0 || args[0] == "" || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			fmt.Fprint(os.Stdout, usage)
			return "", nil, false
		}
		fmt.Fprintf(os.Stderr, "ringtail %s: which subcommand?\n\n%s", command, usage)
		return "", nil, false
	}
	return args[0], args[1:], true
}

// unknownSubcommand reports a subcommand that does not exist; the caller exits 2.
func unknownSubcommand(command, sub, usage string) int {
	fmt.Fprintf(os.Stderr, "ringtail %s: unknown subcommand %q\n\n%s", command, sub, usage)
	return 2
}
