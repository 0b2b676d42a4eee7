package kafkanet

import (
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ringtail/ringtail/meta"
)

// handleMetadata answers Metadata (key 3): this node as the only broker, controller and leader
// of every partition. Requested topics that do not exist are created when both the request
// (v4+) and the broker allow it.
func (b *Broker) handleMetadata(c *Context, kreq kmsg.Request, respond func(kmsg.Response)) {
	req := kreq.(*kmsg.MetadataRequest)
	resp := req.ResponseKind().(*kmsg.MetadataResponse)

	broker := kmsg.NewMetadataResponseBroker()
	broker.NodeID = b.cfg.NodeID
	broker.Host = b.cfg.AdvertisedHost
	broker.Port = b.cfg.AdvertisedPort
	resp.Brokers = []kmsg.MetadataResponseBroker{broker}
	clusterID := b.meta.ClusterID()
	resp.ClusterID = &clusterID
	resp.ControllerID = b.cfg.NodeID

	// v0: an empty list means every topic; v1+: null means every topic, empty means none.
	all := req.Topics == nil || (c.Version == 0 && len(req.Topics) == 0)
	if all {
		for _, t := range b.meta.Topics() {
			resp.Topics = append(resp.Topics, b.metadataTopic(t))
		}
		respond(resp)
		return
	}
	allowAuto := c.Version < 4 || req.AllowAutoTopicCreation
	for _, rt := range req.Topics {
		if rt.Topic == nil { // v10+ may ask by topic id alone
			t, ok := b.meta.TopicByID(rt.TopicID)
			if !ok {
				mt := kmsg.NewMetadataResponseTopic()
				mt.TopicID = rt.TopicID
				mt.ErrorCode = kerr.UnknownTopicID.Code
				resp.Topics = append(resp.Topics, mt)
				continue
			}
			resp.Topics = append(resp.Topics, b.metadataTopic(t))
			continue
		}
		name := *rt.Topic
		t, err := b.topicOrCreate(name, allowAuto)
		if err != nil {
			if !errors.Is(err, meta.ErrUnknownTopic) {
				c.Log.Warn("metadata: topic refused", "topic", name, "err", err)
			}
			mt := kmsg.NewMetadataResponseTopic()
			mt.Topic = &name
			mt.ErrorCode = errorCode(err)
			resp.Topics = append(resp.Topics, mt)
			continue
		}
		resp.Topics = append(resp.Topics, b.metadataTopic(t))
	}
	respond(resp)
}

// metadataTopic describes topic t with this node leading every partition.
func (b *Broker) metadataTopic(t meta.Topic) kmsg.MetadataResponseTopic {
	mt := kmsg.NewMetadataResponseTopic()
	name := t.Name
	mt.Topic = &name
	mt.TopicID = t.ID
	mt.IsInternal = isInternal(t.Name)
	mt.Partitions = make([]kmsg.MetadataResponseTopicPartition, t.Partitions)
	for p := int32(0); p < t.Partitions; p++ {
		mp := kmsg.NewMetadataResponseTopicPartition()
		mp.Partition = p
		mp.Leader = b.cfg.NodeID
		mp.LeaderEpoch = 0
		mp.Replicas = []int32{b.cfg.NodeID}
		mp.ISR = []int32{b.cfg.NodeID}
		mp.OfflineReplicas = []int32{}
		mt.Partitions[p] = mp
	}
	return mt
}
