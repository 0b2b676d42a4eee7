package kafkanet

import "github.com/twmb/franz-go/pkg/kmsg"

func init() {
	register(kmsg.DescribeTransactions, 0, 0, func(h *Handlers) HandleFunc { return h.handleDescribeTransactions })
}

// handleDescribeTransactions answers DescribeTransactions (key 65): the state of each
// transactional id this node coordinates; others get NOT_COORDINATOR.
func (h *Handlers) handleDescribeTransactions(c *Context, req kmsg.Request, respond func(kmsg.Response)) {
	h.node.HandleTxn(c.Log, req, respond)
}
