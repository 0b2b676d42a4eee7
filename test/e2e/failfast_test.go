package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringtail/ringtail/test/cluster"
)

// Failure detection faster than the session: a broker whose process dies is fenced about a
// second later, because the controller sees its heartbeat connection close (or, for a dead
// controller, the new controller finds its listener refusing), while a broker that is alive
// but lost its connection, or stopped for a while, is not fenced.

// failfastSession is the brokers' session timeout in these tests: long, so that anything
// fenced well within it was fenced by the faster detection, however slow the machine.
const failfastSession = 60 * time.Second

// failfastGrace is the default --disconnect-grace; failfastWindow is how long a live broker
// must stay unfenced after losing its connection or being paused: several graces.
const (
	failfastGrace  = time.Second
	failfastWindow = 4 * failfastGrace
)

// TestClusterFailFast: three brokers with a 60 s session. A broker whose heartbeat connection
// is cut (the socket destroyed, as root) stays unfenced: it heartbeats again at once. A broker
// stopped (SIGSTOP) for several graces stays unfenced: its connection stays open. A broker
// killed with kill -9 loses its leaderships within half the session (in about a second, as the
// controller's log says why), and so does a killed controller (its successor finds its
// listener refusing).
func TestClusterFailFast(t *testing.T) {
	c := startCluster3With(t, cluster3Opts{args: []string{"--session-timeout", failfastSession.String()}})
	topic := topicName(t, "")
	createRF3(t, c, topic, 6)
	_, ctrl, err := partitionsOf(t, c.Broker(1), topic)
	if err != nil {
		t.Fatal(err)
	}
	victim := ctrl%3 + 1 // not the controller
	other := c.Broker(int(victim)%3 + 1)
	controller := c.Broker(int(ctrl))
	all := []int32{1, 2, 3}

	t.Run("connection cut", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("destroying another process's socket (ss -K) needs root")
		}
		from := controller.LogLen()
		n, err := destroyConns(c.Broker(int(victim)).Process().Pid(), controller.Addr())
		if err != nil || n == 0 {
			t.Skipf("cannot destroy broker %d's heartbeat connection: %d destroyed, %v", victim, n, err)
		}
		if err := controller.WaitLog(ctxTimeout(t, clusterWait), from, hintLine(victim)); err != nil {
			t.Fatalf("the controller did not take the closed connection as a hint: %v", err)
		}
		stayLive(t, c, controller, from, other, all, victim)
	})

	t.Run("paused", func(t *testing.T) {
		from := controller.LogLen()
		b := c.Broker(int(victim))
		if err := b.Pause(); err != nil {
			t.Fatal(err)
		}
		stayLive(t, c, controller, from, other, all, victim)
		if err := b.Resume(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("kill -9", func(t *testing.T) {
		from := controller.LogLen()
		took := killMoves(t, c, topic, victim, other)
		if err := controller.WaitLog(ctxTimeout(t, clusterWait), from, hintLine(victim)); err != nil {
			t.Errorf("no hint in the controller's log: %v", err)
		}
		t.Logf("leaderships moved %v after kill -9 of broker %d (session %v)", took.Round(time.Millisecond), victim, failfastSession)
		restart(t, c, victim, other)
	})

	t.Run("kill -9 of the controller", func(t *testing.T) {
		others := []*cluster.Broker{c.Broker(int(ctrl)%3 + 1), c.Broker((int(ctrl)+1)%3 + 1)}
		froms := []int{others[0].LogLen(), others[1].LogLen()}
		took := killMoves(t, c, topic, ctrl, others[0])
		_, now, err := partitionsOf(t, others[0], topic)
		if err != nil {
			t.Fatal(err)
		}
		next := others[slices.IndexFunc(others, func(b *cluster.Broker) bool { return int32(b.ID()) == now })]
		if !strings.Contains(next.Log()[froms[slices.Index(others, next)]:], refusedLine(ctrl)) {
			t.Errorf("the new controller %d did not find broker %d's listener refusing", now, ctrl)
		}
		t.Logf("leaderships moved %v after kill -9 of controller %d (session %v)", took.Round(time.Millisecond), ctrl, failfastSession)
		restart(t, c, ctrl, next)
	})
}

// hintLine is the start of the controller's log line for broker id's closed heartbeat
// connection.
func hintLine(id int32) string {
	return fmt.Sprintf(`msg="cluster: the heartbeat connection of a broker closed; it is fenced unless it heartbeats again" broker=%d `, id)
}

// refusedLine is the start of a new controller's log line for broker id's refusing listener.
func refusedLine(id int32) string {
	return fmt.Sprintf(`msg="cluster: a broker's listener refuses connections; it is fenced unless it heartbeats" broker=%d `, id)
}

// stayLive checks, for failfastWindow, that broker id stays live as observer reports and that
// the controller (its log from from) never fences it.
func stayLive(t *testing.T, c *cluster.Cluster, controller *cluster.Broker, from int, observer *cluster.Broker, all []int32, id int32) {
	t.Helper()
	fence := fmt.Sprintf("fence broker %d ", id)
	for start := time.Now(); time.Since(start) < failfastWindow; {
		md, err := metadataOf(t, observer)
		if err != nil {
			t.Fatalf("metadata from broker %d: %v", observer.ID(), err)
		}
		got := md.Brokers.NodeIDs()
		slices.Sort(got)
		if !slices.Equal(got, all) {
			t.Fatalf("live brokers %v %v after broker %d lost its connection or stopped: it was fenced", got, time.Since(start), id)
		}
		if strings.Contains(controller.Log()[from:], fence) {
			t.Fatalf("the controller fenced broker %d", id)
		}
	}
}

// killMoves kills broker id with kill -9 and waits until observer reports no partition of
// topic led by it; it fails if that takes half the session or more, and returns how long it
// took.
func killMoves(t *testing.T, c *cluster.Cluster, topic string, id int32, observer *cluster.Broker) time.Duration {
	t.Helper()
	start := time.Now()
	if err := c.Broker(int(id)).Kill(); err != nil {
		t.Fatal(err)
	}
	took := waitCluster(t, fmt.Sprintf("leaderships off broker %d", id), func() error {
		now, _, err := partitionsOf(t, observer, topic)
		if err != nil {
			return err
		}
		for p, pv := range now {
			if pv.leader == id || pv.leader < 0 {
				return fmt.Errorf("partition %d led by %d", p, pv.leader)
			}
		}
		return nil
	})
	if took := time.Since(start); took >= failfastSession/2 {
		t.Errorf("leaderships moved %v after kill -9 of broker %d: not well within its session (%v)", took, id, failfastSession)
	}
	return took
}

// restart starts broker id again and waits until observer lists every broker as live.
func restart(t *testing.T, c *cluster.Cluster, id int32, observer *cluster.Broker) {
	t.Helper()
	if err := c.Broker(int(id)).Start(ctxTimeout(t, clusterWait)); err != nil {
		t.Fatal(err)
	}
	waitBrokers(t, c, observer, []int32{1, 2, 3})
}

// ssLine matches a line of `ss -tnpH state established`: the local port, the peer's port and
// the process.
var ssLine = regexp.MustCompile(`^\d+\s+\d+\s+\S+:(\d+)\s+\S+:(\d+)\s+.*pid=(\d+),`)

// destroyConns destroys (ss -K, root) every TCP connection process pid has open to addr, and
// returns how many. The kernel resets them: both ends see the connection end at once, as when
// a connection is cut by a reset, with both processes alive.
func destroyConns(pid int, addr string) (int, error) {
	_, port, ok := strings.Cut(addr, ":")
	if !ok {
		return 0, fmt.Errorf("address %q", addr)
	}
	out, err := exec.Command("ss", "-tnpH", "state", "established", "dport", "= :"+port).Output()
	if err != nil {
		return 0, fmt.Errorf("ss: %v", err)
	}
	var local []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := ssLine.FindStringSubmatch(sc.Text())
		if m == nil || m[2] != port || m[3] != strconv.Itoa(pid) {
			continue
		}
		local = append(local, m[1])
	}
	for _, lp := range local {
		out, err := exec.Command("ss", "-K", "-tnH", "state", "established", "sport", "= :"+lp, "dport", "= :"+port).CombinedOutput()
		if err != nil || !strings.Contains(string(out), ":"+lp) {
			return 0, fmt.Errorf("ss -K: %v: %s", err, out)
		}
	}
	return len(local), nil
}
