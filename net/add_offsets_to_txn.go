package kafkanet

import "github.com/twmb/franz-go/pkg/kmsg"

func init() {
	register(kmsg.AddOffsetsToTxn, 0, 3, func(h *Handlers) HandleFunc { return h.handleAddOffsetsToTxn })
}

// handleAddOffsetsToTxn answers AddOffsetsToTxn (key 25, v0–v3): the group's __consumer_offsets
// partition joins the open transaction, so its offsets (TxnOffsetCommit) settle with it.
func (h *Handlers) handleAddOffsetsToTxn(c *Context, req kmsg.Request, respond func(kmsg.Response)) {
	h.node.HandleTxn(c.Log, req, respond)
}
