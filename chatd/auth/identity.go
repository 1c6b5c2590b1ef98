package auth

import (
	"strings"
	"time"
)

// Identity describes who a connection is and what it may do.
//
// The zero value is not a meaningful identity; identities come from
// [Authenticator.Authenticate].
type Identity struct {
	// UserID is the JWT "sub" claim for token users, or the chosen name,
	// verbatim, for anonymous users. The two namespaces are not separated;
	// see [Config.AllowAnonymous].
	UserID string

	// Anonymous is true when the identity was not proven by a token.
	Anonymous bool

	// Rooms holds the room patterns the user may join, in the syntax
	// understood by CanJoin. A nil slice means the user may join any room;
	// a non-nil empty slice means the user may join none. The distinction is
	// deliberate: an issuer that omits the claim grants everything, while an
	// issuer that sends an empty list has explicitly granted nothing.
	Rooms []string

	// ExpiresAt is when the token stops being valid, after which the server
	// should drop the connection or demand a fresh token. It is the zero
	// time for anonymous identities, which do not expire.
	ExpiresAt time.Time
}

// CanJoin reports whether the identity may join room.
//
// Each entry of Rooms is either an exact room name, a prefix followed by a
// single trailing "*" (for example "team-*" matches "team-red"), or "*"
// alone, which matches every room. A nil Rooms allows every room. The empty
// room name is never joinable, so that a caller that forgot to fill in the
// room fails closed.
func (id Identity) CanJoin(room string) bool {
	if room == "" {
		return false
	}
	if id.Rooms == nil {
		return true
	}
	for _, pattern := range id.Rooms {
		if matchRoom(pattern, room) {
			return true
		}
	}
	return false
}

// matchRoom reports whether room matches one pattern in the syntax
// documented on [Identity.CanJoin].
func matchRoom(pattern, room string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(room, prefix)
	}
	return pattern == room
}

// validRoomPattern reports whether pattern is usable in [Identity.Rooms].
// A "*" anywhere but at the end is refused rather than treated literally,
// because an issuer writing "team-*-admins" almost certainly expects
// wildcard semantics that CanJoin does not provide, and granting less than
// intended silently would be hard to debug.
func validRoomPattern(pattern string) bool {
	if pattern == "" {
		return false
	}
	body := strings.TrimSuffix(pattern, "*")
	return !strings.Contains(body, "*")
}
