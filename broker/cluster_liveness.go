package broker

// Failure detection beyond the session: the controller hears within about a second that a
// broker's process died, from two hints (meta/controller: Disconnected, ListenerRefused):
//
//   - the broker's heartbeat connection to the controller closed (the kernel closes a dead
//     process's sockets at once; net tells this node when a connection that carried a
//     BrokerHeartbeat ends);
//   - a new controller, which has heard from nobody, dials the Kafka listener of each broker
//     it has not heard from, and a refused connection says nothing listens there (its
//     predecessor, killed, often).
//
// Either fences the broker DisconnectGrace later unless it heartbeats meanwhile, which a live
// broker does at once: it heartbeats again on a new connection as soon as one breaks, and to
// a new controller as soon as it learns of it.

import (
	"context"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/ringtail/ringtail/meta/controller"
)

// BrokerDisconnected is the controller's side of a closed heartbeat connection: connection
// conn, on which broker id heartbeated at broker epoch epoch, closed. When the broker's last
// heartbeat came on it, the controller fences the broker DisconnectGrace from now unless it
// heartbeats again. Not the controller, or another connection: nothing happens.
func (b *Broker) BrokerDisconnected(conn uint64, id int32, epoch int64) {
	c := b.cl
	if c == nil {
		return
	}
	c.ctrlMu.Lock()
	ctrl := c.ctrl
	var err error
	if ctrl != nil {
		err = ctrl.Disconnected(b.meta.State(), id, epoch, conn, time.Now())
	}
	c.ctrlMu.Unlock()
	switch {
	case ctrl == nil, err == nil && c.cfg.DisconnectGrace < 0:
	case err != nil:
		b.log.Debug("cluster: a broker's heartbeat connection closed; not its last one", "broker", id,
			"broker_epoch", epoch, "conn", conn, "err", err)
	default:
		b.log.Info("cluster: the heartbeat connection of a broker closed; it is fenced unless it heartbeats again",
			"broker", id, "broker_epoch", epoch, "within", c.cfg.DisconnectGrace)
	}
}

// probeListeners dials, for the new controller ctrl, the Kafka listener of every unfenced
// broker but this one, and tells ctrl of each that refuses (controller.ListenerRefused). A
// dial that connects or times out (a host that is down, or cut off) says nothing: the takeover
// grace covers those. Run on its own goroutine (counted in c.wg); it ends with c.stop.
func (b *Broker) probeListeners(ctrl *controller.Controller) {
	c := b.cl
	defer c.wg.Done()
	if c.cfg.DisconnectGrace < 0 {
		return
	}
	// A dial that has not connected within the takeover grace no longer matters.
	ctx, cancel := context.WithTimeout(context.Background(), 3*c.cfg.HeartbeatInterval)
	defer cancel()
	go func() {
		select {
		case <-c.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	var dials sync.WaitGroup
	for _, br := range b.meta.State().Brokers() {
		if br.Fenced || br.ID == b.cfg.NodeID {
			continue
		}
		dials.Add(1)
		go func() {
			defer dials.Done()
			var d net.Dialer
			conn, err := d.DialContext(ctx, "tcp", br.Listener)
			if err == nil {
				conn.Close()
				return
			}
			if !errors.Is(err, syscall.ECONNREFUSED) {
				return
			}
			at := time.Now()
			c.ctrlMu.Lock()
			current := c.ctrl == ctrl
			if current {
				err = ctrl.ListenerRefused(b.meta.State(), br.ID, br.Epoch, at)
			}
			c.ctrlMu.Unlock()
			if current && err == nil {
				b.log.Info("cluster: a broker's listener refuses connections; it is fenced unless it heartbeats",
					"broker", br.ID, "broker_epoch", br.Epoch, "listener", br.Listener, "within", c.cfg.DisconnectGrace)
			}
		}()
	}
	dials.Wait()
}

// isKafkaError: err is a Kafka error code the controller answered with (the request and its
// connection went through), not a failure to reach it.
func isKafkaError(err error) bool {
	var ke *kerr.Error
	return errors.As(err, &ke)
}
