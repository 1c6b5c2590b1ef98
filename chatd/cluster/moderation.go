package cluster

import (
	"slices"
	"sync"

	"github.com/ringchat/ringchat/chatd/rpc"
)

// The server API's moderation calls act on a user's connections, which may
// be on any node and are indexed nowhere cluster-wide: like a direct
// message, each goes to every live node (fanOut).

// DisconnectUser closes every connection of user on every live node with
// the WebSocket close code and reason. reply gets how many connections
// were closed and the nodes that did not carry the order out.
func (n *Node) DisconnectUser(user string, code int, reason string, reply func(closed int, unreached []string)) {
	local := n.hub.DisconnectUser(user, code, reason)
	fanOut(n, rpc.Encode(rpc.OpDisconnect, rpc.DisconnectReq{User: user, Code: code, Reason: reason}), local,
		func(r *rpc.DisconnectResp) int { return r.Closed }, reply)
}

// Kick makes every connection of user on every live node leave room, with
// reason. reply gets how many connections left and the nodes that did not
// carry the order out.
func (n *Node) Kick(room, user, reason string, reply func(kicked int, unreached []string)) {
	local := n.hub.Kick(room, user, reason)
	fanOut(n, rpc.Encode(rpc.OpKick, rpc.KickReq{Room: room, User: user, Reason: reason}), local,
		func(r *rpc.KickResp) int { return r.Kicked }, reply)
}

// SubscribeUser joins every connection of user on every live node to
// room, as if each had sent a join. reply gets how many connections
// joined and the nodes that did not carry the order out.
func (n *Node) SubscribeUser(room, user string, reply func(subscribed int, unreached []string)) {
	local := n.hub.SubscribeUser(room, user)
	fanOut(n, rpc.Encode(rpc.OpSubscribeUser, rpc.SubscribeUserReq{Room: room, User: user}), local,
		func(r *rpc.SubscribeUserResp) int { return r.Subscribed }, reply)
}

// fanOut sends payload to every other live node and replies with local
// plus the counts they answer, and the nodes that did not answer
// (unreachable, or of a release without the op, which refuses it as an
// unknown op): their connections may be untouched, and the API says so
// instead of claiming success.
func fanOut[R any](n *Node, payload []byte, local int, count func(*R) int, reply func(total int, unreached []string)) {
	gather(n, payload, func(answers map[string]*R, unreached []string) {
		total := local
		for _, r := range answers {
			total += count(r)
		}
		reply(total, unreached)
	})
}

// gather sends payload to every other live node and replies with each
// one's answer by name, and the sorted names of the nodes that did not
// answer (unreachable, or of a release without the op).
func gather[R any](n *Node, payload []byte, reply func(answers map[string]*R, unreached []string)) {
	v, _ := n.currentView()
	var (
		mu        sync.Mutex
		answers   = make(map[string]*R, len(v.addrs))
		unreached []string
		remaining sync.WaitGroup
	)
	for name, addr := range v.addrs {
		if name == n.cfg.Self {
			continue
		}
		remaining.Add(1)
		resp := new(R)
		n.call(name, addr, payload, resp, func(err error) {
			mu.Lock()
			if err != nil {
				n.log.Warn("a node did not answer a server API call", "peer", name, "op", rpc.Op(payload[0]).String(), "err", err)
				unreached = append(unreached, name)
			} else {
				answers[name] = resp
			}
			mu.Unlock()
			remaining.Done()
		})
	}
	// The waiter's owner is this call: it ends once every call has
	// answered, which n.call guarantees within the call timeout.
	go func() {
		remaining.Wait()
		mu.Lock()
		defer mu.Unlock()
		slices.Sort(unreached)
		reply(answers, unreached)
	}()
}
