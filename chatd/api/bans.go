package api

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/ringchat/ringchat/chatd/moderation"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// Bans is the node's copy of the bans and mutes in force
// (moderation.State satisfies it).
type Bans interface {
	// Loaded reports whether the node has read the whole moderation log.
	Loaded() bool
	// List returns the bans (or mutes) in force; with filter, only the
	// given room's own (room "" for the cluster-wide ones).
	List(mutes bool, room string, filter bool) []moderation.Entry
}

// MaxBanDuration bounds a ban's or a mute's duration; a longer one is
// refused (bad_request): a ban meant to last is one without a duration.
const MaxBanDuration = 10 * 366 * 24 * time.Hour

// BanRequest is the body of POST /api/v1/bans.
type BanRequest struct {
	// User is who is banned. Required.
	User string `json:"user"`
	// Room is the room banned from; absent: every room.
	Room string `json:"room,omitempty"`
	// Duration is how long the ban lasts, as a Go duration ("90m",
	// "24h"); absent: until lifted.
	Duration string `json:"duration,omitempty"`
	// Reason is shown to the user.
	Reason string `json:"reason,omitempty"`
}

// Ban is a ban or a mute, as stored and as listed; the answer to every
// ban, unban, mute and unmute (a lift has no until nor reason).
type Ban struct {
	User string `json:"user"`
	// Room is absent for a cluster-wide ban.
	Room string `json:"room,omitempty"`
	// Until is when it ends, in Unix milliseconds; absent: never.
	Until  int64  `json:"until,omitempty"`
	Reason string `json:"reason,omitempty"`
	// At is when it was made, in Unix milliseconds.
	At int64 `json:"at"`
}

// BanList answers GET /api/v1/bans.
type BanList struct {
	Bans []Ban `json:"bans"`
}

func banOf(e moderation.Entry) Ban {
	return Ban{User: e.User, Room: e.Room, Until: e.Until, Reason: e.Reason, At: e.At}
}

func (h *handler) ban(w http.ResponseWriter, r *http.Request) {
	var req BanRequest
	if e, status := decode(w, r, maxModerationBody, &req); e != nil {
		writeError(w, status, e)
		return
	}
	entry, e := checkBan(req.User, req.Room, req.Duration, req.Reason, time.Now())
	if e != nil {
		writeError(w, http.StatusBadRequest, e)
		return
	}
	entry.Op = moderation.OpBan
	h.record(w, r, entry)
}

func (h *handler) unban(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for name := range q {
		if name != "user" && name != "room" {
			writeError(w, http.StatusBadRequest, &Error{Code: CodeBadRequest, Field: name, Message: fmt.Sprintf("%s: unknown query parameter (user, room)", truncate(name, 32))})
			return
		}
	}
	entry, e := checkBan(q.Get("user"), q.Get("room"), "", "", time.Now())
	if e != nil {
		writeError(w, http.StatusBadRequest, e)
		return
	}
	entry.Op = moderation.OpUnban
	h.record(w, r, entry)
}

func (h *handler) listBans(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for name := range q {
		if name != "room" {
			writeError(w, http.StatusBadRequest, &Error{Code: CodeBadRequest, Field: name, Message: fmt.Sprintf("%s: unknown query parameter (room)", truncate(name, 32))})
			return
		}
	}
	room, filter := q.Get("room"), q.Has("room")
	if filter && room != "" {
		if err := protocol.ValidateRoom(room); err != nil {
			writeError(w, http.StatusBadRequest, &Error{Code: CodeInvalidRoom, Field: "room", Message: "room: " + err.Error()})
			return
		}
	}
	if !h.cfg.Bans.Loaded() {
		e := &Error{Code: CodeUnavailable, Message: "this node has not read the moderation log yet; retry"}
		writeError(w, statusOf(e), e)
		return
	}
	list := BanList{Bans: []Ban{}}
	for _, e := range h.cfg.Bans.List(false, room, filter) {
		list.Bans = append(list.Bans, banOf(e))
	}
	writeJSON(w, http.StatusOK, list)
}

// checkBan validates a ban's (or an unban's, or a mute's) members and
// returns its entry, Op left to the caller.
func checkBan(user, room, duration, reason string, now time.Time) (moderation.Entry, *Error) {
	if e := checkUser(user, "user"); e != nil {
		return moderation.Entry{}, e
	}
	if room != "" {
		if err := protocol.ValidateRoom(room); err != nil {
			return moderation.Entry{}, &Error{Code: CodeInvalidRoom, Field: "room", Message: "room: " + err.Error()}
		}
	}
	if e := checkReason(reason); e != nil {
		return moderation.Entry{}, e
	}
	entry := moderation.Entry{User: user, Room: room, Reason: reason, At: now.UnixMilli()}
	if duration != "" {
		d, err := time.ParseDuration(duration)
		if err != nil || d < time.Second || d > MaxBanDuration {
			return moderation.Entry{}, &Error{Code: CodeBadRequest, Field: "duration", Message: fmt.Sprintf("duration: want a Go duration from 1s to %v, such as \"90m\" or \"24h\" (absent: until lifted)", MaxBanDuration)}
		}
		entry.Until = now.Add(d).UnixMilli()
	}
	return entry, nil
}

// record writes entry to the moderation log through its owner, as a
// message: stored on --replication-factor nodes before the answer, then
// applied by every node that follows the log.
func (h *handler) record(w http.ResponseWriter, r *http.Request, entry moderation.Entry) {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	cid := CIDPrefix + hex.EncodeToString(b[:])
	_, err := awaitOne(h, w, r, "the moderation log's owner did not answer in time; the entry may be stored: retry",
		func(reply func(protocol.Ack, error)) {
			h.cfg.Router.Publish(moderation.Room, moderation.Sender, cid, entry.Encode(), reply)
		})
	switch {
	case errors.Is(err, errAnswered):
	case err != nil:
		e := ownerError(err)
		writeError(w, statusOf(e), e)
	default:
		writeJSON(w, http.StatusOK, banOf(entry))
	}
}

// MuteRequest is the body of POST /api/v1/rooms/{room}/mutes.
type MuteRequest struct {
	// User is who is muted. Required.
	User string `json:"user"`
	// Duration is how long, as a Go duration; absent: until unmuted.
	Duration string `json:"duration,omitempty"`
	// Reason is shown to the user when a send is refused.
	Reason string `json:"reason,omitempty"`
}

// MuteList answers GET /api/v1/rooms/{room}/mutes.
type MuteList struct {
	Mutes []Ban `json:"mutes"`
}

// pathRoom reads and checks the {room} of the path.
func pathRoom(w http.ResponseWriter, r *http.Request) (string, bool) {
	room := r.PathValue("room")
	if err := protocol.ValidateRoom(room); err != nil {
		writeError(w, http.StatusBadRequest, &Error{Code: CodeInvalidRoom, Field: "room", Message: "room: " + err.Error()})
		return "", false
	}
	return room, true
}

// onlyParams refuses query parameters other than names.
func onlyParams(w http.ResponseWriter, r *http.Request, names ...string) bool {
	known := strings.Join(names, ", ")
	if known == "" {
		known = "this route takes none"
	}
	for name := range r.URL.Query() {
		if !slices.Contains(names, name) {
			writeError(w, http.StatusBadRequest, &Error{Code: CodeBadRequest, Field: truncate(name, 32), Message: fmt.Sprintf("%s: unknown query parameter (%s)", truncate(name, 32), known)})
			return false
		}
	}
	return true
}

func (h *handler) mute(w http.ResponseWriter, r *http.Request) {
	room, ok := pathRoom(w, r)
	if !ok {
		return
	}
	var req MuteRequest
	if e, status := decode(w, r, maxModerationBody, &req); e != nil {
		writeError(w, status, e)
		return
	}
	entry, e := checkBan(req.User, room, req.Duration, req.Reason, time.Now())
	if e != nil {
		writeError(w, http.StatusBadRequest, e)
		return
	}
	entry.Op = moderation.OpMute
	h.record(w, r, entry)
}

func (h *handler) unmute(w http.ResponseWriter, r *http.Request) {
	room, ok := pathRoom(w, r)
	if !ok || !onlyParams(w, r, "user") {
		return
	}
	entry, e := checkBan(r.URL.Query().Get("user"), room, "", "", time.Now())
	if e != nil {
		writeError(w, http.StatusBadRequest, e)
		return
	}
	entry.Op = moderation.OpUnmute
	h.record(w, r, entry)
}

func (h *handler) listMutes(w http.ResponseWriter, r *http.Request) {
	room, ok := pathRoom(w, r)
	if !ok || !onlyParams(w, r) {
		return
	}
	if !h.cfg.Bans.Loaded() {
		e := &Error{Code: CodeUnavailable, Message: "this node has not read the moderation log yet; retry"}
		writeError(w, statusOf(e), e)
		return
	}
	list := MuteList{Mutes: []Ban{}}
	for _, e := range h.cfg.Bans.List(true, room, true) {
		list.Mutes = append(list.Mutes, banOf(e))
	}
	writeJSON(w, http.StatusOK, list)
}
