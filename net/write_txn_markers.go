package kafkanet

import "github.com/twmb/franz-go/pkg/kmsg"

func init() {
	register(kmsg.WriteTxnMarkers, 0, 1, func(h *Handlers) HandleFunc { return h.handleWriteTxnMarkers })
}

// handleWriteTxnMarkers answers WriteTxnMarkers (key 27, v0–v1), sent by another broker's
// transaction coordinator: each marker is appended to the partition this node leads and
// answered once committed on its in-sync replicas (per partition errors otherwise).
func (h *Handlers) handleWriteTxnMarkers(c *Context, kreq kmsg.Request, respond func(kmsg.Response)) {
	h.node.WriteTxnMarkers(kreq.(*kmsg.WriteTxnMarkersRequest), respond)
}
