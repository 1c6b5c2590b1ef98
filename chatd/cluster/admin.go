package cluster

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"github.com/ringchat/ringchat/chatd/hub"
	"github.com/ringchat/ringchat/chatd/membership"
	"github.com/ringchat/ringchat/chatd/ring"
)

// AdminMember is one member as the admin API shows it.
type AdminMember struct {
	Name       string `json:"name"`
	State      string `json:"state"`
	GossipAddr string `json:"gossip_addr,omitempty"`
	RPCAddr    string `json:"rpc_addr,omitempty"`
	HTTPAddr   string `json:"http_addr,omitempty"`
}

// AdminRoom is a room this node knows, with its placement.
type AdminRoom struct {
	hub.RoomStat
	Owner    string   `json:"owner"`
	Replicas []string `json:"replicas,omitempty"`
}

// AdminStatus is the body of GET /admin/cluster.
type AdminStatus struct {
	Self              string        `json:"self"`
	Clustered         bool          `json:"clustered"`
	ViewVersion       uint64        `json:"view_version"`
	Members           []AdminMember `json:"members"`
	Active            []string      `json:"active"`
	ReplicationFactor int           `json:"replication_factor"`
	// ExpectedNodes is the cluster size the quorum rule applies (0: none).
	ExpectedNodes int         `json:"expected_nodes"`
	OwnedRooms    []string    `json:"owned_rooms"`
	ReplicaRooms  []string    `json:"replica_rooms"`
	LocalRooms    []AdminRoom `json:"local_rooms"`
}

// Status reports this node's view of the cluster and its rooms.
func (n *Node) Status(m *membership.Membership) AdminStatus {
	v, _ := n.currentView()
	st := AdminStatus{
		Self:              n.cfg.Self,
		Clustered:         m != nil,
		ViewVersion:       v.version,
		Active:            slices.Clone(v.active),
		ReplicationFactor: n.cfg.ReplicationFactor,
		ExpectedNodes:     n.ExpectedNodes(),
		OwnedRooms:        n.owners.OwnedRooms(),
		ReplicaRooms:      n.owners.ReplicaRooms(),
	}
	if m != nil {
		for _, mem := range m.View().Members {
			st.Members = append(st.Members, AdminMember{Name: mem.Name, State: string(mem.Meta.State), GossipAddr: mem.GossipAddr, RPCAddr: mem.Meta.RPCAddr, HTTPAddr: mem.Meta.HTTPAddr})
		}
	} else {
		st.Members = []AdminMember{{Name: n.cfg.Self, State: "active"}}
	}
	for _, rs := range n.hub.Stats() {
		owners := ring.Owners(rs.Room, v.active, max(n.cfg.ReplicationFactor, 1))
		ar := AdminRoom{RoomStat: rs}
		if len(owners) > 0 {
			ar.Owner, ar.Replicas = owners[0], owners[1:]
		}
		st.LocalRooms = append(st.LocalRooms, ar)
	}
	slices.Sort(st.OwnedRooms)
	slices.Sort(st.ReplicaRooms)
	slices.SortFunc(st.LocalRooms, func(a, b AdminRoom) int { return strings.Compare(a.Room, b.Room) })
	return st
}

// AdminHandler serves the admin API under /admin/: GET /admin/cluster. When
// token is set, requests must carry "Authorization: Bearer <token>".
func (n *Node) AdminHandler(token string, m *membership.Membership) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin/cluster", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(n.Status(m))
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token != "" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="chatd admin"`)
				http.Error(w, "admin API: missing or wrong bearer token", http.StatusUnauthorized)
				return
			}
		}
		mux.ServeHTTP(w, r)
	})
}
