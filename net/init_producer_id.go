package kafkanet

import (
	"math"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	register(kmsg.InitProducerID, 0, 4, func(h *Handlers) HandleFunc { return h.handleInitProducerID })
}

// handleInitProducerID answers InitProducerId (key 22) for idempotent producers: a producer id
// never handed out before (the allocator is durable) with epoch 0, or, when a producer asks to
// bump the epoch of the id it holds (KIP-360, v3+), the same id with the next epoch.
// A transactional producer's request goes to the coordinator of its transactional id
// (package txn), which keeps its producer id and bumps its epoch, fencing older producers.
func (h *Handlers) handleInitProducerID(c *Context, kreq kmsg.Request, respond func(kmsg.Response)) {
	req := kreq.(*kmsg.InitProducerIDRequest)
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID = -1
	resp.ProducerEpoch = -1
	if req.TransactionalID != nil {
		h.node.HandleTxn(c.Log, req, respond)
		return
	}
	if req.ProducerID >= 0 && req.ProducerEpoch >= 0 && req.ProducerEpoch < math.MaxInt16-1 {
		resp.ProducerID = req.ProducerID
		resp.ProducerEpoch = req.ProducerEpoch + 1
		respond(resp)
		return
	}
	id, err := h.node.NextProducerID()
	if err != nil {
		c.Log.Error("init producer id: allocating", "err", err)
		resp.ErrorCode = kerr.KafkaStorageError.Code
		respond(resp)
		return
	}
	resp.ProducerID = id
	resp.ProducerEpoch = 0
	respond(resp)
}
