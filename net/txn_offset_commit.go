package kafkanet

import "github.com/twmb/franz-go/pkg/kmsg"

func init() {
	register(kmsg.TxnOffsetCommit, 0, 3, func(h *Handlers) HandleFunc { return h.handleTxnOffsetCommit })
}

// handleTxnOffsetCommit answers TxnOffsetCommit (key 28, v0–v3): the group coordinator writes
// the offsets in a transactional batch of the producer and holds them until the transaction's
// marker commits or aborts them (group/txn_offsets.go).
func (h *Handlers) handleTxnOffsetCommit(c *Context, req kmsg.Request, respond func(kmsg.Response)) {
	h.node.HandleGroup(c.ClientID, c.RemoteAddr, c.Log, req, respond)
}
