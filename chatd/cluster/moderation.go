package cluster

import (
	"slices"
	"sync"

	"github.com/ringchat/ringchat/chatd/rpc"
)

// DisconnectUser closes every connection of user on every live node with
// the WebSocket close code and reason, for the server API. Like a direct
// message it goes to every node, since a user's connections may be on any
// of them. reply gets how many connections were closed and the nodes that
// did not answer (unreachable, or of a release without OpDisconnect, which
// refuses it as an unknown op): their connections of user may still be
// open, and the API says so instead of claiming success.
func (n *Node) DisconnectUser(user string, code int, reason string, reply func(closed int, unreached []string)) {
	v, _ := n.currentView()
	var (
		mu        sync.Mutex
		closed    = n.hub.DisconnectUser(user, code, reason)
		unreached []string
		remaining sync.WaitGroup
	)
	payload := rpc.Encode(rpc.OpDisconnect, rpc.DisconnectReq{User: user, Code: code, Reason: reason})
	for name, addr := range v.addrs {
		if name == n.cfg.Self {
			continue
		}
		remaining.Add(1)
		var resp rpc.DisconnectResp
		n.call(name, addr, payload, &resp, func(err error) {
			mu.Lock()
			if err != nil {
				n.log.Warn("disconnect not carried out on a node", "peer", name, "err", err)
				unreached = append(unreached, name)
			} else {
				closed += resp.Closed
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
		reply(closed, unreached)
	}()
}
