package membership

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"

	"github.com/hashicorp/memberlist"
)

// State is a node's lifecycle state as it advertises it to the cluster.
// Ownership is decided from it: rooms are only ever placed on active nodes.
type State string

const (
	// StateJoining is a node that is a member but must not own rooms yet,
	// typically because it is still warming up. It is also what a member
	// whose metadata cannot be understood is treated as, so that a node we
	// cannot read never becomes an owner.
	StateJoining State = "joining"
	// StateActive is a node that may own rooms.
	StateActive State = "active"
	// StateDraining is a node that is handing its rooms off before it
	// leaves; it must not be given new ones.
	StateDraining State = "draining"
)

// Valid reports whether s is one of the states this version knows.
func (s State) Valid() bool {
	switch s {
	case StateJoining, StateActive, StateDraining:
		return true
	}
	return false
}

// MaxMetaSize is the largest encoded Meta memberlist accepts. memberlist
// panics on larger metadata, so every path that changes it checks this first.
const MaxMetaSize = memberlist.MetaMaxSize

// ErrMetaTooLarge is returned (wrapped) when a Meta would not fit in
// MaxMetaSize bytes once encoded.
var ErrMetaTooLarge = errors.New("node metadata too large")

// Meta is the metadata every node gossips about itself. It travels in every
// alive message, so it is kept small and encoded compactly.
type Meta struct {
	// RPCAddr is the inter-node transport address (host:port) other nodes
	// use to forward and replicate to this node.
	RPCAddr string `json:"r,omitempty"`
	// HTTPAddr is the client-facing address, for admin and debug tools.
	HTTPAddr string `json:"h,omitempty"`
	// State is the node's lifecycle state.
	State State `json:"s,omitempty"`
	// Proto is the inter-node protocol version the node speaks.
	Proto int `json:"p,omitempty"`
}

// validate checks the fields a node sets about itself. Remote metadata goes
// through decodeMeta instead, which never fails.
func (m Meta) validate() error {
	if !m.State.Valid() {
		return fmt.Errorf("invalid state %q (want %q, %q or %q)", m.State, StateJoining, StateActive, StateDraining)
	}
	if m.Proto < 0 {
		return fmt.Errorf("invalid protocol version %d: must not be negative", m.Proto)
	}
	for _, f := range []struct{ name, addr string }{{"RPCAddr", m.RPCAddr}, {"HTTPAddr", m.HTTPAddr}} {
		if f.addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(f.addr); err != nil {
			return fmt.Errorf("meta %s %q is not host:port: %w", f.name, f.addr, err)
		}
	}
	return nil
}

// encode validates m and returns its wire form, refusing anything that
// memberlist would reject (it panics rather than erroring on oversized meta).
func (m Meta) encode() ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode meta: %w", err)
	}
	if len(b) > MaxMetaSize {
		return nil, fmt.Errorf("%w: %d bytes encoded, limit is %d", ErrMetaTooLarge, len(b), MaxMetaSize)
	}
	return b, nil
}

// decodeMeta reads a remote node's metadata. It never fails: metadata comes
// from the network and may be from another version or plain garbage, and a
// member we cannot understand must still appear in the view (it is alive)
// but must never be chosen as an owner, so it is reported as joining. The
// returned error says what was wrong, for logging.
func decodeMeta(b []byte) (Meta, error) {
	if len(b) == 0 {
		return Meta{State: StateJoining}, errors.New("no metadata")
	}
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return Meta{State: StateJoining}, fmt.Errorf("undecodable metadata: %w", err)
	}
	if !m.State.Valid() {
		bad := m.State
		m.State = StateJoining
		return m, fmt.Errorf("unknown state %q", bad)
	}
	return m, nil
}
