package kafkanet

import (
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// heartbeatNode is the part of a Node the BrokerHeartbeat handler calls, recording the calls.
type heartbeatNode struct {
	Node // nil: nothing else is called

	mu     sync.Mutex
	beats  []heartbeatCall
	closed chan heartbeatCall // BrokerDisconnected calls
	// hold, when set, keeps BrokerHeartbeat from returning until it is closed.
	hold chan struct{}
}

type heartbeatCall struct {
	conn  uint64
	id    int32
	epoch int64
}

func (n *heartbeatNode) BrokerHeartbeat(conn uint64, id int32, epoch int64, _ bool) (bool, bool, error) {
	n.mu.Lock()
	n.beats = append(n.beats, heartbeatCall{conn, id, epoch})
	hold := n.hold
	n.mu.Unlock()
	if hold != nil {
		<-hold
	}
	return false, false, nil
}

func (n *heartbeatNode) BrokerDisconnected(conn uint64, id int32, epoch int64) {
	n.closed <- heartbeatCall{conn, id, epoch}
}

func (n *heartbeatNode) lastBeat() heartbeatCall {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.beats[len(n.beats)-1]
}

func heartbeatServer(t *testing.T) (*Server, *heartbeatNode) {
	node := &heartbeatNode{closed: make(chan heartbeatCall, 16)}
	reg := NewRegistry()
	h := NewHandlers(node)
	reg.Register(API{Key: int16(kmsg.BrokerHeartbeat), MinVersion: 0, MaxVersion: 0, Handle: h.handleBrokerHeartbeat})
	return startServer(t, reg, 0), node
}

func heartbeatReq(id int32, epoch int64) *kmsg.BrokerHeartbeatRequest {
	r := kmsg.NewPtrBrokerHeartbeatRequest()
	r.BrokerID, r.BrokerEpoch, r.CurrentMetadataOffset = id, epoch, -1
	return r
}

func expectDisconnect(t *testing.T, n *heartbeatNode, want heartbeatCall) {
	t.Helper()
	select {
	case got := <-n.closed:
		if got != want {
			t.Fatalf("BrokerDisconnected%+v, want %+v", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no BrokerDisconnected%+v", want)
	}
}

// A broker's heartbeat connection: the node hears of its close, naming the connection the
// heartbeats came on and the broker and epoch of the last one; connections are told apart.
func TestBrokerHeartbeatConnectionClose(t *testing.T) {
	s, node := heartbeatServer(t)
	a, b := dial(t, s), dial(t, s)
	for _, epoch := range []int64{7, 8} {
		a.write(a.frame(heartbeatReq(2, epoch), 0))
		a.read(kmsg.NewPtrBrokerHeartbeatResponse(), 0)
	}
	onA := node.lastBeat()
	b.write(b.frame(heartbeatReq(3, 9), 0))
	b.read(kmsg.NewPtrBrokerHeartbeatResponse(), 0)
	onB := node.lastBeat()
	if onA.conn == 0 || onB.conn == 0 || onA.conn == onB.conn {
		t.Fatalf("heartbeats on connections %d and %d: want two distinct ids", onA.conn, onB.conn)
	}

	a.conn.Close()
	expectDisconnect(t, node, heartbeatCall{onA.conn, 2, 8})
	b.conn.Close()
	expectDisconnect(t, node, heartbeatCall{onB.conn, 3, 9})

	// A connection that never carried a heartbeat says nothing when it closes.
	c := dial(t, s)
	c.conn.Close()
	s.Stop(t.Context())
	select {
	case got := <-node.closed:
		t.Fatalf("BrokerDisconnected%+v for a connection without heartbeats", got)
	default:
	}
}

// A close while a heartbeat is being handled is told after that handler returns: the node
// never hears of the close before the heartbeat that came on the connection.
func TestBrokerHeartbeatCloseDuringHandler(t *testing.T) {
	s, node := heartbeatServer(t)
	node.hold = make(chan struct{})
	a := dial(t, s)
	a.write(a.frame(heartbeatReq(4, 1), 0))
	deadline := time.Now().Add(10 * time.Second)
	for {
		node.mu.Lock()
		n := len(node.beats)
		node.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the heartbeat never reached the node")
		}
		time.Sleep(time.Millisecond)
	}
	a.conn.Close()
	select {
	case got := <-node.closed:
		t.Fatalf("BrokerDisconnected%+v while the heartbeat's handler runs", got)
	case <-time.After(100 * time.Millisecond):
	}
	close(node.hold)
	expectDisconnect(t, node, heartbeatCall{node.lastBeat().conn, 4, 1})
}
