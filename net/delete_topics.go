package kafkanet

import (
	"fmt"

	"github.com/ringtail/ringtail/broker"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() {
	register(kmsg.DeleteTopics, 0, 6, func(h *Handlers) HandleFunc { return h.handleDeleteTopics })
}

// handleDeleteTopics answers DeleteTopics (key 20): by name (v0–v5) or by name or topic id (v6).
func (h *Handlers) handleDeleteTopics(c *Context, kreq kmsg.Request, respond func(kmsg.Response)) {
	req := kreq.(*kmsg.DeleteTopicsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteTopicsResponse)

	type target struct {
		name *string
		id   [16]byte
	}
	var targets []target
	if c.Version < 6 {
		for _, name := range req.TopicNames {
			n := name
			targets = append(targets, target{name: &n})
		}
	} else {
		for _, t := range req.Topics {
			targets = append(targets, target{name: t.Topic, id: t.TopicID})
		}
	}
	for _, tg := range targets {
		st := kmsg.NewDeleteTopicsResponseTopic()
		st.TopicID = tg.id
		var err error
		name := ""
		switch {
		case tg.name != nil:
			name = *tg.name
		case tg.id != [16]byte{}:
			if t, ok := h.node.TopicByID(tg.id); ok {
				name = t.Name
			} else {
				err = fmt.Errorf("%w: no topic with id %x", kerr.UnknownTopicID, tg.id)
			}
		default:
			err = fmt.Errorf("%w: neither topic name nor id given", kerr.InvalidRequest)
		}
		if err == nil {
			var t broker.Topic
			t, err = h.node.DeleteTopic(name)
			st.Topic = &name
			if err == nil {
				st.TopicID = t.ID
			}
		}
		if err != nil {
			c.Log.Warn("delete topics: refused", "topic", name, "err", err)
			st.ErrorCode = errorCode(err)
			st.ErrorMessage = errorMessage(err)
		}
		resp.Topics = append(resp.Topics, st)
	}
	respond(resp)
}
