package kafkanet

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	register(kmsg.FindCoordinator, 0, 6, func(h *Handlers) HandleFunc { return h.handleFindCoordinator })
}

// Coordinator key types of FindCoordinator.
const (
	coordinatorGroup       = 0
	coordinatorTransaction = 1
)

// handleFindCoordinator answers FindCoordinator (key 10, v0–v6, batched keys from v4): a
// group's coordinator is the broker leading the group's __consumer_offsets partition, as the
// node says; a transactional id's is the broker leading its __transaction_state partition.
func (h *Handlers) handleFindCoordinator(c *Context, kreq kmsg.Request, respond func(kmsg.Response)) {
	req := kreq.(*kmsg.FindCoordinatorRequest)
	resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
	answer := func(keyType int8, key string) (node, port int32, host string, code int16, msg *string) {
		lookup := h.node.CoordinatorFor
		switch keyType {
		case coordinatorGroup:
		case coordinatorTransaction:
			lookup = h.node.TxnCoordinatorFor
		default:
			c.Log.Warn("find coordinator: unknown key type", "key_type", keyType)
			return -1, -1, "", kerr.InvalidRequest.Code, nil
		}
		node, host, port, err := lookup(key)
		if err != nil {
			c.Log.Warn("find coordinator", "key", key, "err", err)
			return -1, -1, "", errorCode(err), errorMessage(err)
		}
		return node, port, host, 0, nil
	}
	if c.Version < 4 {
		resp.NodeID, resp.Port, resp.Host, resp.ErrorCode, resp.ErrorMessage = answer(req.CoordinatorType, req.CoordinatorKey)
		respond(resp)
		return
	}
	for _, key := range req.CoordinatorKeys {
		rc := kmsg.NewFindCoordinatorResponseCoordinator()
		rc.Key = key
		rc.NodeID, rc.Port, rc.Host, rc.ErrorCode, rc.ErrorMessage = answer(req.CoordinatorType, key)
		resp.Coordinators = append(resp.Coordinators, rc)
	}
	respond(resp)
}
