package kafkanet

import "github.com/twmb/franz-go/pkg/kmsg"

func init() {
	register(kmsg.BrokerHeartbeat, 0, 0, func(h *Handlers) HandleFunc { return h.handleBrokerHeartbeat })
}

// handleBrokerHeartbeat answers BrokerHeartbeat (key 63, v0), from another broker of the
// cluster to the controller (this node, if it leads the metadata; else NOT_CONTROLLER): the
// broker is alive at its broker epoch, and with WantShutdown asks for its leaderships to move
// away; ShouldShutdown says it leads nothing now.
//
// The connection is then the broker's heartbeat connection, and the node hears when it
// closes (BrokerDisconnected, after this handler and any later one of the connection have
// returned): a broker's process that dies has its sockets closed by the kernel at once, which
// the controller takes as a hint to fence it soon, unless it heartbeats again.
func (h *Handlers) handleBrokerHeartbeat(c *Context, kreq kmsg.Request, respond func(kmsg.Response)) {
	req := kreq.(*kmsg.BrokerHeartbeatRequest)
	resp := req.ResponseKind().(*kmsg.BrokerHeartbeatResponse)
	conn, id, epoch := c.ConnID(), req.BrokerID, req.BrokerEpoch
	c.AtConnEnd(func() { h.node.BrokerDisconnected(conn, id, epoch) })
	fenced, shutdown, err := h.node.BrokerHeartbeat(conn, id, epoch, req.WantShutdown)
	resp.IsFenced, resp.ShouldShutdown, resp.IsCaughtUp = fenced, shutdown, !fenced
	if err != nil {
		resp.ErrorCode = errorCode(err)
		c.Log.Debug("broker heartbeat refused", "broker", req.BrokerID, "broker_epoch", req.BrokerEpoch, "err", err)
	}
	respond(resp)
}
