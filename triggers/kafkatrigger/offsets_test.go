package kafkatrigger_test

import "github.com/twmb/franz-go/pkg/kmsg"

// kmsgOffsetFetch asks a group's committed offsets of one topic.
func kmsgOffsetFetch(group, topic string) *kmsg.OffsetFetchRequest {
	req := kmsg.NewPtrOffsetFetchRequest()
	g := kmsg.NewOffsetFetchRequestGroup()
	g.Group = group
	tp := kmsg.NewOffsetFetchRequestGroupTopic()
	tp.Topic = topic
	tp.Partitions = []int32{0, 1, 2}
	g.Topics = append(g.Topics, tp)
	req.Groups = append(req.Groups, g)
	return req
}
