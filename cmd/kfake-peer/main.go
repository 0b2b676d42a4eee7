// Command kfake-peer runs franz-go's kfake as a broker in its own process, so that the perf
// harness can measure it side by side with Ringtail on the same machine and the same client.
//
//	kfake-peer --listen 127.0.0.1:9092 --partitions 6 [--persist-dir DIR [--sync-writes]]
//	           [--sync-load-dir DIR [--sync-load-bytes N] [--sync-load-rate N]]
//	           [--sync-each-produce DIR]
//
// It prints "listening on HOST:PORT" once it accepts connections and shuts down on SIGINT/SIGTERM.
// With --sync-load-dir it also writes to the disk the way a broker's group commit does, without
// tying any acknowledgement to it (perf.SyncLoad), and prints what the load did when it stops.
// With --sync-each-produce it does the bench's raw sync (perf.RawSyncWriter: 4 KiB written and
// fdatasynced) inside every Produce request before kfake answers it: an in-memory broker plus
// exactly one device sync per request, the composite issue 14's lone target adds up.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"

	"github.com/ringtail/ringtail/perf"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9092", "address to listen on (kfake always binds 127.0.0.1; port 0 picks one)")
	partitions := flag.Int("partitions", 6, "partitions of auto-created topics and of CreateTopics with -1 partitions")
	persist := flag.String("persist-dir", "", "persist the log to this directory (default: in memory)")
	syncWrites := flag.Bool("sync-writes", false, "fsync every produced batch before acknowledging (needs --persist-dir)")
	loadDir := flag.String("sync-load-dir", "", "while serving, write to a file in this directory with O_DIRECT and RWF_DSYNC, one write at a time, acknowledging nothing by it: a durable broker's device traffic beside an in-memory broker (off when empty)")
	loadBytes := flag.Int("sync-load-bytes", 16<<10, "bytes per sync-load write (a multiple of 4096)")
	loadRate := flag.Float64("sync-load-rate", 4000, "sync-load writes per second; 0: back to back")
	syncEach := flag.String("sync-each-produce", "", "write 4 KiB and fdatasync it in a file in this directory inside every Produce request, before kfake handles it (off when empty)")
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
	load := perf.SyncLoad{Dir: *loadDir, Bytes: *loadBytes, Rate: *loadRate}
	if err := load.Check(); *loadDir != "" && err != nil {
		fail("%v", err)
	}
	// kfake listens as soon as it is made; its connections wait here until it is set up (the
	// bench takes a broker that answers as ready).
	gate := &gatedListeners{open: make(chan struct{})}
	opts := []kfake.Opt{
		kfake.ListenFn(gate.listen),
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
	if *syncEach != "" {
		err := os.MkdirAll(*syncEach, 0o755)
		var w *perf.RawSyncWriter
		if err == nil {
			w, err = perf.OpenRawSyncWriter(filepath.Join(*syncEach, "sync-each-produce"))
		}
		if err != nil {
			c.Close()
			fail("%v", err)
		}
		defer w.Close()
		syncEachProduce(c, w)
	}
	ctx, stop := context.WithCancel(context.Background())
	loaded := make(chan error, 1)
	if *loadDir != "" {
		go func() {
			st, err := load.Run(ctx)
			if err == nil {
				fmt.Println(st)
			}
			loaded <- err
		}()
	} else {
		loaded <- nil
	}
	close(gate.open)
	fmt.Printf("listening on %s\n", c.ListenAddrs()[0])

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-sig:
	case err := <-loaded:
		if err != nil { // a peer without its load would be measured as one with it
			c.Close()
			fail("%v", err)
		}
		loaded <- nil // no load: nothing to wait for below
		<-sig
	}
	stop()
	c.Close()
	if err := <-loaded; err != nil {
		fail("%v", err)
	}
}

// gatedListeners makes kfake's listeners accept nothing until open is closed.
type gatedListeners struct{ open chan struct{} }

func (g *gatedListeners) listen(network, address string) (net.Listener, error) {
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	return gatedListener{ln, g.open}, nil
}

type gatedListener struct {
	net.Listener
	open chan struct{}
}

func (l gatedListener) Accept() (net.Conn, error) {
	<-l.open
	return l.Listener.Accept()
}

// syncEachProduce makes c sync once inside each Produce request, then handle it as usual. kfake
// runs a control function on a goroutine of its own while its request loop waits for it.
func syncEachProduce(c *kfake.Cluster, w *perf.RawSyncWriter) {
	var mu sync.Mutex // kfake runs controls one at a time; this keeps the writer safe regardless
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		mu.Lock()
		err := w.Sync()
		mu.Unlock()
		if err != nil {
			// Answering without the sync would be measured as the sync's cost.
			fail("sync inside a produce: %v", err)
		}
		return nil, nil, false // not handled: the control stays, kfake answers the request
	})
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "kfake-peer: "+format+"\n", args...)
	os.Exit(2)
}
