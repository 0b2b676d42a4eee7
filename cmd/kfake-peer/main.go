// Command kfake-peer runs franz-go's kfake as a broker in its own process, so that the perf
// harness can measure it side by side with Ringtail on the same machine and the same client.
//
//	kfake-peer --listen 127.0.0.1:9092 --partitions 6 [--persist-dir DIR [--sync-writes]]
//
// It prints "listening on HOST:PORT" once it accepts connections and shuts down on SIGINT/SIGTERM.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9092", "address to listen on (kfake always binds 127.0.0.1; port 0 picks one)")
	partitions := flag.Int("partitions", 6, "partitions of auto-created topics and of CreateTopics with -1 partitions")
	persist := flag.String("persist-dir", "", "persist the log to this directory (default: in memory)")
	syncWrites := flag.Bool("sync-writes", false, "fsync every produced batch before acknowledging (needs --persist-dir)")
	flag.Parse()

	host, portStr, err := net.SplitHostPort(*listen)
	if err != nil {
		fail("bad --listen: %v", err)
	}
	if host != "" && host != "127.0.0.1" && host != "localhost" {
		fail("kfake only listens on 127.0.0.1")
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		fail("bad --listen port: %v", err)
	}
	if *syncWrites && *persist == "" {
		fail("--sync-writes needs --persist-dir")
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.DefaultNumPartitions(*partitions),
		kfake.AllowAutoTopicCreation(),
	}
	if port != 0 {
		opts = append(opts, kfake.Ports(port))
	}
	if *persist != "" {
		opts = append(opts, kfake.DataDir(*persist))
		if *syncWrites {
			opts = append(opts, kfake.SyncWrites())
		}
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		fail("start kfake: %v", err)
	}
	fmt.Printf("listening on %s\n", c.ListenAddrs()[0])

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	c.Close()
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "kfake-peer: "+format+"\n", args...)
	os.Exit(2)
}
