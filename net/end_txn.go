package kafkanet

import "github.com/twmb/franz-go/pkg/kmsg"

func init() {
	register(kmsg.EndTxn, 0, 3, func(h *Handlers) HandleFunc { return h.handleEndTxn })
}

// handleEndTxn answers EndTxn (key 26, v0–v3): the coordinator durably prepares the commit or
// abort and answers; the markers follow (WriteTxnMarkers), and the transaction completes once
// every partition holds its marker on its in-sync replicas.
func (h *Handlers) handleEndTxn(c *Context, req kmsg.Request, respond func(kmsg.Response)) {
	h.node.HandleTxn(c.Log, req, respond)
}
