package cluster

import (
	"errors"
	"fmt"
	"time"

	"github.com/ringchat/ringchat/chatd/rpc"
	"github.com/ringchat/ringchat/chatd/transport"
)

// Ping sends the named member a request over the inter-node transport and
// calls done with nil once it answered. An answer proves that the two nodes
// share the cluster secret and label: the request travels on a connection
// whose handshake authenticated both ends, and so does the reply (the peer
// answers on its own connection to this node). An error reply counts as an
// answer too (a node of an older version that does not know the request
// still authenticated it). done may run on any goroutine, also before Ping
// returns.
func (n *Node) Ping(name, addr string, timeout time.Duration, done func(error)) {
	if n.peers == nil {
		done(fmt.Errorf("%w: no transport in a cluster of one", transport.ErrPeerUnavailable))
		return
	}
	n.peers.Request(transport.Peer{Name: name, Addr: addr}, rpc.Bare(rpc.OpPing), timeout, func(_ []byte, err error) {
		var re *transport.RemoteError
		if errors.As(err, &re) {
			err = nil
		}
		done(err)
	})
}
