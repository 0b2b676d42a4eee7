package kafkanet

import "github.com/twmb/franz-go/pkg/kmsg"

func init() {
	register(kmsg.AddPartitionsToTxn, 0, 4, func(h *Handlers) HandleFunc { return h.handleAddPartitionsToTxn })
}

// handleAddPartitionsToTxn answers AddPartitionsToTxn (key 24): v0–v3 from a transactional
// producer (the partitions join its open transaction, answered once the coordinator's state is
// durable), v4 from a broker (batched transactions, VerifyOnly for KIP-890's check before a
// transactional produce). The transaction coordinator (package txn) decides; broker/txn*.go
// hosts it. v5 (TRANSACTION_ABORTABLE, KIP-890 part 2) is not offered.
func (h *Handlers) handleAddPartitionsToTxn(c *Context, req kmsg.Request, respond func(kmsg.Response)) {
	h.node.HandleTxn(c.Log, req, respond)
}
