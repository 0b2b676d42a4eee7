package kafkanet

import "github.com/twmb/franz-go/pkg/kmsg"

func init() {
	register(kmsg.ListTransactions, 0, 1, func(h *Handlers) HandleFunc { return h.handleListTransactions })
}

// handleListTransactions answers ListTransactions (key 66, v0–v1): the transactional ids this
// node coordinates, filtered by state, producer id and (v1) age.
func (h *Handlers) handleListTransactions(c *Context, req kmsg.Request, respond func(kmsg.Response)) {
	h.node.HandleTxn(c.Log, req, respond)
}
