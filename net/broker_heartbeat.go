package kafkanet

import "github.com/twmb/franz-go/pkg/kmsg"

func init() {
	register(kmsg.BrokerHeartbeat, 0, 0, func(h *Handlers) HandleFunc { return h.handleBrokerHeartbeat })
}

// handleBrokerHeartbeat answers BrokerHeartbeat (key 63, v0), from another broker of the
// cluster to the controller (this node, if it leads the metadata; else NOT_CONTROLLER): the
// broker is alive at its broker epoch, and with WantShutdown asks for its leaderships to move
// away; ShouldShutdown says it leads nothing now.
func (h *Handlers) handleBrokerHeartbeat(c *Context, kreq kmsg.Request, respond func(kmsg.Response)) {
	req := kreq.(*kmsg.BrokerHeartbeatRequest)
	resp := req.ResponseKind().(*kmsg.BrokerHeartbeatResponse)
	fenced, shutdown, err := h.node.BrokerHeartbeat(req.BrokerID, req.BrokerEpoch, req.WantShutdown)
	resp.IsFenced, resp.ShouldShutdown, resp.IsCaughtUp = fenced, shutdown, !fenced
	if err != nil {
		resp.ErrorCode = errorCode(err)
		c.Log.Debug("broker heartbeat refused", "broker", req.BrokerID, "broker_epoch", req.BrokerEpoch, "err", err)
	}
	respond(resp)
}
