package e2e

import (
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestAdvertisedAPIsAnswer: every API version the broker advertises in ApiVersions is handled:
// a minimal request at each advertised version (that franz-go can encode) gets a well-formed
// response with the right correlation id, never a closed connection.
func TestAdvertisedAPIsAnswer(t *testing.T) {
	b := startBroker(t)
	createTopic(t, b.Admin(t), "apis", 1, nil)
	versions := apiVersions(t, b.Addr())
	if len(versions) == 0 {
		t.Fatalf("ApiVersions advertises nothing")
	}
	for _, key := range []int16{0, 1, 2, 3, 18, 19, 20, 22, 32} { // what issue #2 requires
		if _, ok := versions[key]; !ok {
			t.Errorf("ApiVersions does not advertise API key %d (%s)", key, kmsg.NameForKey(key))
		}
	}
	// Each connection opens with ApiVersions, as clients' do: one whose first request is a
	// broker's (BrokerHeartbeat, AlterPartition) is taken for a broker's connection, which may
	// send nothing else (net/conn_limit.go), and the map's order would make that first request
	// now and then.
	dialClient := func() *rawConn {
		rc := dialRaw(t, b.Addr())
		hello := kmsg.NewPtrApiVersionsRequest()
		hello.ClientSoftwareName, hello.ClientSoftwareVersion = "e2e", "1"
		rc.mustRoundTrip(t, hello)
		return rc
	}
	rc := dialClient()
	for key, mm := range versions {
		req := kmsg.RequestForKey(key)
		if req == nil {
			t.Errorf("broker advertises API key %d, unknown to kmsg", key)
			continue
		}
		maxV := min(mm[1], req.MaxVersion())
		for v := mm[0]; v <= maxV; v++ {
			req := kmsg.RequestForKey(key)
			req.SetVersion(v)
			switch r := req.(type) {
			case *kmsg.ProduceRequest:
				r.Acks = -1 // acks=0 would get no response
				r.TimeoutMillis = 1000
			case *kmsg.FetchRequest:
				r.ReplicaID = -1
				r.MaxWaitMillis = 0
				r.MaxBytes = 1 << 20
			case *kmsg.ListOffsetsRequest:
				r.ReplicaID = -1
			case *kmsg.CreateTopicsRequest:
				r.TimeoutMillis = 1000
			case *kmsg.DeleteTopicsRequest:
				r.TimeoutMillis = 1000
			case *kmsg.InitProducerIDRequest:
				r.TransactionTimeoutMillis = 60000
				r.ProducerID, r.ProducerEpoch = -1, -1
			case *kmsg.ApiVersionsRequest:
				r.ClientSoftwareName, r.ClientSoftwareVersion = "e2e", "1"
			}
			if _, err := rc.roundTrip(req, 10*time.Second); err != nil {
				t.Errorf("%s v%d (advertised %d..%d): %v", kmsg.NameForKey(key), v, mm[0], mm[1], err)
				rc.Close()
				rc = dialClient()
			}
		}
	}
	if err := pingApiVersions(b.Addr()); err != nil {
		t.Fatalf("broker unusable afterwards: %v", err)
	}
}

// TestPipelinedResponsesInOrder: requests pipelined on one connection are answered in the order
// they were sent, even when an earlier one (a long-poll fetch on an empty partition, an acks=all
// produce) finishes after later, quicker ones.
func TestPipelinedResponsesInOrder(t *testing.T) {
	b := startBroker(t)
	createTopic(t, b.Admin(t), "pipeline", 2, nil)
	versions := apiVersions(t, b.Addr())
	fv := pickVersion(t, versions, 1, 12)
	pv := pickVersion(t, versions, 0, 11)
	mv := pickVersion(t, versions, 3, 12)

	produce := func(partition int32, val string) kmsg.Request {
		req := kmsg.NewPtrProduceRequest()
		req.Version = pv
		req.Acks = -1
		req.TimeoutMillis = 10000
		rt := kmsg.NewProduceRequestTopic()
		rt.Topic = "pipeline"
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Partition = partition
		rp.Records = encodeBatch(batchSpec{values: [][]byte{[]byte(val)}})
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		return req
	}
	meta := func() kmsg.Request {
		req := kmsg.NewPtrMetadataRequest()
		req.Version = mv
		return req
	}
	apiv := func() kmsg.Request {
		req := kmsg.NewPtrApiVersionsRequest()
		req.Version = 0
		return req
	}
	var reqs []kmsg.Request
	for i := 0; i < 5; i++ {
		reqs = append(reqs,
			fetchReq(fv, "pipeline", 1, 0, 300), // partition 1 stays empty: waits the full 300 ms
			meta(),
			produce(0, "p"+strconv.Itoa(i)),
			apiv(),
		)
	}
	rc := dialRaw(t, b.Addr())
	corrs := make([]int32, len(reqs))
	for i, req := range reqs {
		c, err := rc.send(req)
		if err != nil {
			t.Fatalf("send #%d: %v", i, err)
		}
		corrs[i] = c
	}
	var lastOffset int64 = -1
	for i, req := range reqs {
		resp, err := rc.readResponse(req, req.GetVersion(), corrs[i], 30*time.Second)
		if err != nil {
			t.Fatalf("response #%d (%s): %v (responses must come back in request order)", i, kmsg.NameForKey(req.Key()), err)
		}
		if pr, ok := resp.(*kmsg.ProduceResponse); ok {
			p := pr.Topics[0].Partitions[0]
			if p.ErrorCode != 0 || p.BaseOffset != lastOffset+1 {
				t.Fatalf("pipelined produce #%d: error %d, base offset %d; want offset %d", i, p.ErrorCode, p.BaseOffset, lastOffset+1)
			}
			lastOffset = p.BaseOffset
		}
	}
}
