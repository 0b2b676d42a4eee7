package broker

import (
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The shape of the group APIs as the host routes them: which groups a request names, the
// answer to a request whose coordinator is not here (or still loading), and how a request
// naming several groups is split among coordinators and its answers put back together. Pure
// functions over kmsg structs; groups.go does the routing.

// requestGroups returns the groups a request names. multi is true for the requests Kafka
// answers per group (DescribeGroups, DeleteGroups, OffsetFetch v8+): each group's coordinator
// answers for it. ListGroups names none (every coordinator answers); names is nil for a
// request that is no group API at all.
func requestGroups(req kmsg.Request) (names []string, multi bool) {
	switch r := req.(type) {
	case *kmsg.JoinGroupRequest:
		return []string{r.Group}, false
	case *kmsg.SyncGroupRequest:
		return []string{r.Group}, false
	case *kmsg.HeartbeatRequest:
		return []string{r.Group}, false
	case *kmsg.LeaveGroupRequest:
		return []string{r.Group}, false
	case *kmsg.OffsetCommitRequest:
		return []string{r.Group}, false
	case *kmsg.OffsetDeleteRequest:
		return []string{r.Group}, false
	case *kmsg.TxnOffsetCommitRequest:
		return []string{r.Group}, false
	case *kmsg.ConsumerGroupHeartbeatRequest:
		return []string{r.Group}, false
	case *kmsg.OffsetFetchRequest:
		if r.Version < 8 {
			return []string{r.Group}, false
		}
		names = make([]string, len(r.Groups))
		for i, g := range r.Groups {
			names[i] = g.Group
		}
		return names, true
	case *kmsg.DescribeGroupsRequest:
		return r.Groups, true
	case *kmsg.DeleteGroupsRequest:
		return r.Groups, true
	case *kmsg.ConsumerGroupDescribeRequest:
		return r.Groups, true
	}
	return nil, false
}

// subRequest returns a copy of a multi-group request that names only the groups at idx (in
// that order). The copy shares everything else with req, which nobody changes.
func subRequest(req kmsg.Request, idx []int) kmsg.Request {
	switch r := req.(type) {
	case *kmsg.DescribeGroupsRequest:
		c := *r
		c.Groups = pick(r.Groups, idx)
		return &c
	case *kmsg.DeleteGroupsRequest:
		c := *r
		c.Groups = pick(r.Groups, idx)
		return &c
	case *kmsg.OffsetFetchRequest:
		c := *r
		c.Groups = pick(r.Groups, idx)
		return &c
	case *kmsg.ConsumerGroupDescribeRequest:
		c := *r
		c.Groups = pick(r.Groups, idx)
		return &c
	}
	return req
}

func pick[T any](all []T, idx []int) []T {
	out := make([]T, len(idx))
	for k, i := range idx {
		out[k] = all[i]
	}
	return out
}

// placeGroups copies the per-group entries of src, the answer to subRequest(req, idx), into
// dst, the answer to req: entry k of src is the answer for group idx[k]. A src of another
// type (or nil) leaves dst as it was.
func placeGroups(dst kmsg.Response, idx []int, src kmsg.Response) {
	switch d := dst.(type) {
	case *kmsg.DescribeGroupsResponse:
		if s, ok := src.(*kmsg.DescribeGroupsResponse); ok {
			place(d.Groups, idx, s.Groups)
		}
	case *kmsg.DeleteGroupsResponse:
		if s, ok := src.(*kmsg.DeleteGroupsResponse); ok {
			place(d.Groups, idx, s.Groups)
		}
	case *kmsg.OffsetFetchResponse:
		if s, ok := src.(*kmsg.OffsetFetchResponse); ok {
			place(d.Groups, idx, s.Groups)
		}
	case *kmsg.ConsumerGroupDescribeResponse:
		if s, ok := src.(*kmsg.ConsumerGroupDescribeResponse); ok {
			place(d.Groups, idx, s.Groups)
		}
	}
}

func place[T any](dst []T, idx []int, src []T) {
	for k, i := range idx {
		if k < len(src) && i < len(dst) {
			dst[i] = src[k]
		}
	}
}

// groupErrorResponse answers req with code where Kafka puts it when the whole request fails
// for its coordinator (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS): the top-level error
// code, or every partition's of an OffsetCommit (and of an OffsetFetch before v2, which has no
// top-level one), or every group's of a request answered per group. It returns nil for a
// request that is no group API.
func groupErrorResponse(req kmsg.Request, code int16) kmsg.Response {
	switch r := req.(type) {
	case *kmsg.JoinGroupRequest:
		resp := r.ResponseKind().(*kmsg.JoinGroupResponse)
		resp.ErrorCode, resp.Generation, resp.MemberID = code, -1, r.MemberID
		if r.Version < 7 {
			resp.Protocol = new(string) // non-nullable before v7
		}
		return resp
	case *kmsg.SyncGroupRequest:
		resp := r.ResponseKind().(*kmsg.SyncGroupResponse)
		resp.ErrorCode = code
		return resp
	case *kmsg.HeartbeatRequest:
		resp := r.ResponseKind().(*kmsg.HeartbeatResponse)
		resp.ErrorCode = code
		return resp
	case *kmsg.LeaveGroupRequest:
		resp := r.ResponseKind().(*kmsg.LeaveGroupResponse)
		resp.ErrorCode = code
		return resp
	case *kmsg.OffsetDeleteRequest:
		resp := r.ResponseKind().(*kmsg.OffsetDeleteResponse)
		resp.ErrorCode = code
		return resp
	case *kmsg.TxnOffsetCommitRequest:
		resp := r.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
		for _, t := range r.Topics {
			rt := kmsg.NewTxnOffsetCommitResponseTopic()
			rt.Topic = t.Topic
			for _, p := range t.Partitions {
				rp := kmsg.NewTxnOffsetCommitResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p.Partition, code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp
	case *kmsg.ConsumerGroupHeartbeatRequest:
		resp := r.ResponseKind().(*kmsg.ConsumerGroupHeartbeatResponse)
		resp.ErrorCode = code
		return resp
	case *kmsg.ListGroupsRequest:
		resp := r.ResponseKind().(*kmsg.ListGroupsResponse)
		resp.ErrorCode = code
		return resp
	case *kmsg.OffsetCommitRequest:
		resp := r.ResponseKind().(*kmsg.OffsetCommitResponse)
		for _, t := range r.Topics {
			rt := kmsg.NewOffsetCommitResponseTopic()
			rt.Topic, rt.TopicID = t.Topic, t.TopicID
			for _, p := range t.Partitions {
				rp := kmsg.NewOffsetCommitResponseTopicPartition()
				rp.Partition, rp.ErrorCode = p.Partition, code
				rt.Partitions = append(rt.Partitions, rp)
			}
			resp.Topics = append(resp.Topics, rt)
		}
		return resp
	case *kmsg.OffsetFetchRequest:
		return offsetFetchError(r, code)
	case *kmsg.DescribeGroupsRequest:
		resp := r.ResponseKind().(*kmsg.DescribeGroupsResponse)
		resp.Groups = perGroup(r.Groups, func(name string) (g kmsg.DescribeGroupsResponseGroup) {
			g = kmsg.NewDescribeGroupsResponseGroup()
			g.Group, g.ErrorCode = name, code
			return g
		})
		return resp
	case *kmsg.DeleteGroupsRequest:
		resp := r.ResponseKind().(*kmsg.DeleteGroupsResponse)
		resp.Groups = perGroup(r.Groups, func(name string) (g kmsg.DeleteGroupsResponseGroup) {
			g = kmsg.NewDeleteGroupsResponseGroup()
			g.Group, g.ErrorCode = name, code
			return g
		})
		return resp
	case *kmsg.ConsumerGroupDescribeRequest:
		resp := r.ResponseKind().(*kmsg.ConsumerGroupDescribeResponse)
		resp.Groups = perGroup(r.Groups, func(name string) (g kmsg.ConsumerGroupDescribeResponseGroup) {
			g = kmsg.NewConsumerGroupDescribeResponseGroup()
			g.Group, g.ErrorCode = name, code
			return g
		})
		return resp
	}
	return nil
}

// perGroup returns one answer entry per named group, in order.
func perGroup[T any](names []string, entry func(name string) T) []T {
	out := make([]T, 0, len(names))
	for _, name := range names {
		out = append(out, entry(name))
	}
	return out
}

func offsetFetchError(r *kmsg.OffsetFetchRequest, code int16) *kmsg.OffsetFetchResponse {
	resp := r.ResponseKind().(*kmsg.OffsetFetchResponse)
	if r.Version >= 8 {
		for _, g := range r.Groups {
			rg := kmsg.NewOffsetFetchResponseGroup()
			rg.Group, rg.ErrorCode = g.Group, code
			resp.Groups = append(resp.Groups, rg)
		}
		return resp
	}
	resp.ErrorCode = code
	for _, t := range r.Topics {
		rt := kmsg.NewOffsetFetchResponseTopic()
		rt.Topic = t.Topic
		for _, p := range t.Partitions {
			rp := kmsg.NewOffsetFetchResponseTopicPartition()
			rp.Partition, rp.Offset, rp.LeaderEpoch, rp.ErrorCode = p, -1, -1, code
			rp.Metadata = new(string)
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

// Error codes of the routing itself.
var (
	codeNotCoordinator = kerr.NotCoordinator.Code
	codeLoading        = kerr.CoordinatorLoadInProgress.Code
	// codeCoordinatorNotAvailable: the node hosts no coordinator yet (a new cluster).
	codeCoordinatorNotAvailable = kerr.CoordinatorNotAvailable.Code
	// codeUnknownServerError fills an answer's entries before the coordinators' answers do.
	codeUnknownServerError = kerr.UnknownServerError.Code
)
