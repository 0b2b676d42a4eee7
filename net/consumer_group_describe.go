package kafkanet

import "github.com/twmb/franz-go/pkg/kmsg"

func init() {
	register(kmsg.ConsumerGroupDescribe, 0, 1, func(h *Handlers) HandleFunc { return h.handleConsumerGroupDescribe })
}

// handleConsumerGroupDescribe answers ConsumerGroupDescribe (key 69, v0–v1): the KIP-848
// groups named, each answered by its own coordinator (split per offsets partition and put back
// in request order by the broker); a classic group gets GROUP_ID_NOT_FOUND.
func (h *Handlers) handleConsumerGroupDescribe(c *Context, req kmsg.Request, respond func(kmsg.Response)) {
	h.node.HandleGroup(c.ClientID, c.RemoteAddr, c.Log, req, respond)
}
