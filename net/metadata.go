package kafkanet

import (
	"errors"

	"github.com/ringtail/ringtail/broker"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(kmsg.Metadata, 0, 12, func(h *Handlers) HandleFunc { return h.handleMetadata }) }

// handleMetadata answers Metadata (key 3): the live brokers, the controller, and every
// partition's leader, epochs and replicas (on a single node: this node for all of them). Requested topics that do not exist are created when both the request
// (v4+) and the broker allow it.
func (h *Handlers) handleMetadata(c *Context, kreq kmsg.Request, respond func(kmsg.Response)) {
	req := kreq.(*kmsg.MetadataRequest)
	resp := req.ResponseKind().(*kmsg.MetadataResponse)

	for _, b := range h.node.Brokers() {
		mb := kmsg.NewMetadataResponseBroker()
		mb.NodeID, mb.Host, mb.Port, mb.Rack = b.ID, b.Host, b.Port, b.Rack
		resp.Brokers = append(resp.Brokers, mb)
	}
	clusterID := h.node.ClusterID()
	resp.ClusterID = &clusterID
	resp.ControllerID = h.node.ControllerID()

	// v0: an empty list means every topic; v1+: null means every topic, empty means none.
	all := req.Topics == nil || (c.Version == 0 && len(req.Topics) == 0)
	if all {
		for _, t := range h.node.Topics() {
			resp.Topics = append(resp.Topics, h.metadataTopic(t))
		}
		respond(resp)
		return
	}
	allowAuto := c.Version < 4 || req.AllowAutoTopicCreation
	for _, rt := range req.Topics {
		if rt.Topic == nil { // v10+ may ask by topic id alone
			t, ok := h.node.TopicByID(rt.TopicID)
			if !ok {
				mt := kmsg.NewMetadataResponseTopic()
				mt.TopicID = rt.TopicID
				mt.ErrorCode = kerr.UnknownTopicID.Code
				resp.Topics = append(resp.Topics, mt)
				continue
			}
			resp.Topics = append(resp.Topics, h.metadataTopic(t))
			continue
		}
		name := *rt.Topic
		t, err := h.node.TopicOrCreate(name, allowAuto)
		if err != nil {
			if !errors.Is(err, broker.ErrUnknownTopic) {
				c.Log.Warn("metadata: topic refused", "topic", name, "err", err)
			}
			mt := kmsg.NewMetadataResponseTopic()
			mt.Topic = &name
			mt.ErrorCode = errorCode(err)
			resp.Topics = append(resp.Topics, mt)
			continue
		}
		resp.Topics = append(resp.Topics, h.metadataTopic(t))
	}
	respond(resp)
}

// metadataTopic describes topic t: each partition's leader, leader epoch, replicas, in-sync
// replicas and offline replicas as the node knows them.
func (h *Handlers) metadataTopic(t broker.Topic) kmsg.MetadataResponseTopic {
	mt := kmsg.NewMetadataResponseTopic()
	name := t.Name
	mt.Topic = &name
	mt.TopicID = t.ID
	mt.IsInternal = broker.IsInternal(t.Name)
	mt.Partitions = make([]kmsg.MetadataResponseTopicPartition, t.Partitions)
	for p := int32(0); p < t.Partitions; p++ {
		info := h.node.PartitionInfo(t, p)
		mp := kmsg.NewMetadataResponseTopicPartition()
		mp.Partition = p
		mp.Leader = info.Leader
		mp.LeaderEpoch = info.LeaderEpoch
		mp.Replicas = info.Replicas
		mp.ISR = info.ISR
		mp.OfflineReplicas = info.Offline
		if info.Leader < 0 {
			mp.ErrorCode = kerr.LeaderNotAvailable.Code
		}
		mt.Partitions[p] = mp
	}
	return mt
}
