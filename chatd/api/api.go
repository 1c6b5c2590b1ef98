// Package api is chatd's server API: HTTP and JSON under /api/v1/, for an
// application's backend (not for end users' clients) to post messages into
// rooms and read their history. It is served on the admin listener
// (--admin-listen), never on the client port, and every request needs one
// of the keys of --api-key-file as a bearer token; without a key file it is
// not served at all (docs/api.md, docs/api.yaml).
//
// The package sees the cluster only through Router, which the cluster
// node (hub.Router's implementation) satisfies: a call reaches the room's
// owner from any node, exactly as a client's frame does; and through
// Moderator, which reaches every node's connections of a user.
package api

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/roomlog"
)

// Prefix is where the API is mounted; its version is part of the path.
const Prefix = "/api/v1/"

// Router reaches the owner of any room from this node. chatd's cluster
// node (the hub.Router implementation) satisfies it. Every reply function
// is called exactly once, possibly on another goroutine.
type Router interface {
	// Publish stores a message of user in room; a second publish with the
	// same (user, cid) is answered with the first one's ack, Duplicate set.
	Publish(room, user, cid, text string, reply func(protocol.Ack, error))
	// History answers a page of the room's messages below before (0: the
	// newest), at most limit of them.
	History(room string, before uint64, limit int, reply func(protocol.HistoryPage, error))
	// DeleteMessage deletes the message at seq of room in the name of by;
	// the ack is the deletion's (it takes the room's next seq). A seq
	// without a committed message to delete is refused with an error
	// wrapping roomlog.ErrNotDeletable (roomlog.ErrAlreadyDeleted when it
	// was deleted before).
	DeleteMessage(room, by string, seq uint64, reply func(protocol.Ack, error))
}

// SystemSender is the sender of messages published without a "user". Its
// ':' cannot appear in an anonymous name, so no anonymous client can pose
// as it; a JWT issuer must not mint tokens with this subject (docs/api.md).
const SystemSender = "system:api"

// Limits of the API's requests.
const (
	// MaxBroadcastRooms bounds the rooms of one broadcast.
	MaxBroadcastRooms = 100
	// MaxIdempotencyKeyLen bounds an idempotency key: the key becomes the
	// message's client id behind CIDPrefix, and a client id has at most
	// protocol.MaxCIDLen bytes.
	MaxIdempotencyKeyLen = protocol.MaxCIDLen - len(CIDPrefix)
	// MaxUserLen bounds "user", as a token's subject is bounded.
	MaxUserLen = 64
	// DefaultHistoryLimit is a history page's size when limit is absent.
	DefaultHistoryLimit = 50
	// RetryAfter is the Retry-After of a 503, in seconds.
	RetryAfter = 1
)

// CIDPrefix starts the client id of every message the API publishes: the
// idempotency key follows it (a random id when there is none), so that the
// API's keys and a user's own clients' ids never collide in the room's
// dedupe window.
const CIDPrefix = "api:"

// Config configures the API's handler.
type Config struct {
	// Router reaches the rooms' owners.
	Router Router
	// Moderator closes users' connections cluster-wide.
	Moderator Moderator
	// Inspector answers who is where: rooms, presence, a user's
	// connections.
	Inspector Inspector
	// Bans is the node's copy of the bans in force.
	Bans Bans
	// Keys are the accepted API keys. Required.
	Keys *Keys
	// MaxTextBytes is the longest text, as for clients (--max-text-bytes).
	MaxTextBytes int
	// Timeout bounds how long a call waits for the owners' answers; past
	// it the call is answered 503 unavailable (the message may still be
	// stored: retry with the same idempotency key).
	Timeout time.Duration
	// Requests counts requests by route and status; nil counts nothing.
	Requests *prometheus.CounterVec
	// Log receives the server errors; nil discards them.
	Log *slog.Logger
}

// route is one path of the API with its handlers by method.
type route struct {
	pattern string
	methods map[string]http.HandlerFunc
}

// Routes lists the operations the API serves, as "METHOD PATH" with the
// path in ServeMux (and OpenAPI) template syntax.
func Routes() []string {
	var out []string
	for _, rt := range (&handler{}).routes() {
		for m := range rt.methods {
			out = append(out, m+" "+rt.pattern)
		}
	}
	return out
}

type handler struct {
	cfg Config
	log *slog.Logger
	// maxBody bounds a publish's body; broadcasts add their rooms.
	maxBody int64
}

func (h *handler) routes() []route {
	return []route{
		{"/api/v1/rooms/{room}/messages", map[string]http.HandlerFunc{
			http.MethodPost: h.publish,
			http.MethodGet:  h.history,
		}},
		{"/api/v1/rooms/{room}/messages/{seq}", map[string]http.HandlerFunc{
			http.MethodDelete: h.deleteMessage,
		}},
		{"/api/v1/broadcast", map[string]http.HandlerFunc{
			http.MethodPost: h.broadcast,
		}},
		{"/api/v1/rooms/{room}/mutes", map[string]http.HandlerFunc{
			http.MethodPost:   h.mute,
			http.MethodDelete: h.unmute,
			http.MethodGet:    h.listMutes,
		}},
		{"/api/v1/rooms/{room}/kick", map[string]http.HandlerFunc{
			http.MethodPost: h.kick,
		}},
		{"/api/v1/rooms/{room}/subscriptions", map[string]http.HandlerFunc{
			http.MethodPost: h.subscribe,
		}},
		{"/api/v1/bans", map[string]http.HandlerFunc{
			http.MethodPost:   h.ban,
			http.MethodDelete: h.unban,
			http.MethodGet:    h.listBans,
		}},
		{"/api/v1/users/{user}/disconnect", map[string]http.HandlerFunc{
			http.MethodPost: h.disconnect,
		}},
		{"/api/v1/rooms", map[string]http.HandlerFunc{
			http.MethodGet: h.listRooms,
		}},
		{"/api/v1/rooms/{room}/presence", map[string]http.HandlerFunc{
			http.MethodGet: h.presence,
		}},
		{"/api/v1/users/{user}/connections", map[string]http.HandlerFunc{
			http.MethodGet: h.connections,
		}},
	}
}

// Handler returns the API's handler, to be mounted at Prefix on the admin
// listener. Every request under Prefix needs a key, unknown paths
// included, so a caller without one learns nothing of which paths exist.
func Handler(cfg Config) http.Handler {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	h := &handler{cfg: cfg, log: cfg.Log}
	// Every byte of the text may arrive escaped as \uXXXX (6 bytes), and
	// the other members (user, idempotency key, JSON punctuation) fit in
	// 1 KiB.
	h.maxBody = 6*int64(cfg.MaxTextBytes) + 1024
	mux := http.NewServeMux()
	for _, rt := range h.routes() {
		mux.Handle(rt.pattern, methods(rt.methods))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, &Error{Code: CodeNotFound, Message: "no such API route (see docs/api.yaml)"})
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		_, pattern := mux.Handler(r)
		if pattern == "/" || pattern == "" {
			pattern = "other"
		}
		defer func() {
			if cfg.Requests != nil {
				cfg.Requests.WithLabelValues(pattern, strconv.Itoa(rec.status)).Inc()
			}
		}()
		if !cfg.Keys.Authorized(r.Header.Get("Authorization")) {
			rec.Header().Set("WWW-Authenticate", `Bearer realm="chatd api"`)
			writeError(rec, http.StatusUnauthorized, &Error{Code: CodeUnauthorized, Message: "missing or wrong API key (Authorization: Bearer <key>)"})
			return
		}
		mux.ServeHTTP(rec, r)
	})
}

// methods dispatches on the request's method, answering 405 with Allow
// and the API's error shape for the others.
func methods(m map[string]http.HandlerFunc) http.Handler {
	allow := make([]string, 0, len(m))
	for k := range m {
		allow = append(allow, k)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f, ok := m[r.Method]; ok {
			f(w, r)
			return
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeError(w, http.StatusMethodNotAllowed, &Error{Code: CodeMethodNotAllowed, Message: r.Method + " is not allowed here"})
	})
}

// recorder remembers the status written, for the metrics.
type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// PublishRequest is the body of POST /api/v1/rooms/{room}/messages.
type PublishRequest struct {
	// User is the sender; absent: SystemSender.
	User string `json:"user,omitempty"`
	// Text is the message.
	Text string `json:"text"`
	// IdempotencyKey makes a retry return the first call's result.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
}

// Published is one message stored by the API.
type Published struct {
	Room string `json:"room"`
	// Seq is the message's sequence number in the room's epoch.
	Seq uint64 `json:"seq"`
	// Epoch is the room's epoch: Seq counts within it.
	Epoch string `json:"epoch"`
	// TS is when the owner accepted the message, in Unix milliseconds.
	TS int64 `json:"ts"`
	// Duplicate is true when the idempotency key had been used already
	// (by the same sender in the same room): nothing new was stored.
	Duplicate bool `json:"duplicate"`
}

// BroadcastRequest is the body of POST /api/v1/broadcast.
type BroadcastRequest struct {
	Rooms          []string `json:"rooms"`
	User           string   `json:"user,omitempty"`
	Text           string   `json:"text"`
	IdempotencyKey string   `json:"idempotency_key,omitempty"`
}

// BroadcastResult is one room's outcome in a broadcast: the message's
// position, or an error.
type BroadcastResult struct {
	Room      string `json:"room"`
	Seq       uint64 `json:"seq,omitempty"`
	Epoch     string `json:"epoch,omitempty"`
	TS        int64  `json:"ts,omitempty"`
	Duplicate bool   `json:"duplicate,omitempty"`
	Error     *Error `json:"error,omitempty"`
}

// BroadcastResponse answers a broadcast, one result per room in the
// request's order.
type BroadcastResponse struct {
	Results []BroadcastResult `json:"results"`
}

// Message is one entry of a history page: a message ("message"), or a
// deletion ("deleted", with Target the deleted message's seq).
type Message struct {
	Type string `json:"type"`
	Seq  uint64 `json:"seq"`
	MID  string `json:"mid"`
	From string `json:"from"`
	CID  string `json:"cid,omitempty"`
	Text string `json:"text"`
	// Deleted marks a deleted message; its text is empty.
	Deleted bool `json:"deleted,omitempty"`
	// Target is a deletion's deleted seq.
	Target uint64 `json:"target,omitempty"`
	TS     int64  `json:"ts"`
}

// Deleted answers DELETE /api/v1/rooms/{room}/messages/{seq}.
type Deleted struct {
	Room string `json:"room"`
	// Seq is the deleted message's.
	Seq uint64 `json:"seq"`
	// DeletionSeq is the seq the deletion took in the room (0 when the
	// message was already deleted).
	DeletionSeq uint64 `json:"deletion_seq,omitempty"`
	Epoch       string `json:"epoch,omitempty"`
	// Already is true when the message had been deleted before: nothing
	// new was stored (a retried deletion gets this).
	Already bool `json:"already"`
}

// HistoryResponse is a page of a room's history, oldest first.
type HistoryResponse struct {
	Room   string `json:"room"`
	Epoch  string `json:"epoch"`
	Head   uint64 `json:"head"`
	Oldest uint64 `json:"oldest"`
	// More is true when older messages are kept: ask again with
	// before = the first message's seq.
	More     bool      `json:"more"`
	Messages []Message `json:"messages"`
}

func (h *handler) publish(w http.ResponseWriter, r *http.Request) {
	room := r.PathValue("room")
	if err := protocol.ValidateRoom(room); err != nil {
		writeError(w, http.StatusBadRequest, &Error{Code: CodeInvalidRoom, Field: "room", Message: "room: " + err.Error()})
		return
	}
	var req PublishRequest
	if e, status := decode(w, r, h.maxBody, &req); e != nil {
		writeError(w, status, e)
		return
	}
	user, cid, e := h.checkMessage(req.User, req.Text, req.IdempotencyKey)
	if e != nil {
		writeError(w, http.StatusBadRequest, e)
		return
	}
	res := h.publishAll(r, []string{room}, user, cid, req.Text)[0]
	if res.Error != nil {
		writeError(w, statusOf(res.Error), res.Error)
		return
	}
	writeJSON(w, http.StatusOK, Published{Room: res.Room, Seq: res.Seq, Epoch: res.Epoch, TS: res.TS, Duplicate: res.Duplicate})
}

// deleteMessage deletes one message of a room: DELETE
// /api/v1/rooms/{room}/messages/{seq}[?by=NAME] (the deletion's sender,
// SystemSender without it).
func (h *handler) deleteMessage(w http.ResponseWriter, r *http.Request) {
	room := r.PathValue("room")
	if err := protocol.ValidateRoom(room); err != nil {
		writeError(w, http.StatusBadRequest, &Error{Code: CodeInvalidRoom, Field: "room", Message: "room: " + err.Error()})
		return
	}
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil || seq == 0 {
		writeError(w, http.StatusBadRequest, &Error{Code: CodeBadRequest, Field: "seq", Message: "seq: want a message's sequence number (a positive integer)"})
		return
	}
	q := r.URL.Query()
	for name := range q {
		if name != "by" {
			writeError(w, http.StatusBadRequest, &Error{Code: CodeBadRequest, Field: name, Message: name + ": unknown parameter (want by)"})
			return
		}
	}
	by := q.Get("by")
	if by == "" {
		by = SystemSender
	} else if err := validateUser(by); err != nil {
		writeError(w, http.StatusBadRequest, &Error{Code: CodeBadRequest, Field: "by", Message: "by: " + err.Error()})
		return
	}
	ack, err := awaitOne(h, w, r, "the room's owner did not answer in time; the message may be deleted: retry (a retry of a done deletion answers already=true)",
		func(reply func(protocol.Ack, error)) { h.cfg.Router.DeleteMessage(room, by, seq, reply) })
	if errors.Is(err, errAnswered) {
		return
	}
	switch {
	case errors.Is(err, roomlog.ErrAlreadyDeleted):
		writeJSON(w, http.StatusOK, Deleted{Room: room, Seq: seq, Already: true})
	case errors.Is(err, roomlog.ErrNotDeletable):
		writeError(w, http.StatusNotFound, &Error{Code: CodeNoSuchMessage, Field: "seq", Message: fmt.Sprintf("seq: room %s has no message %d to delete (not kept, not written yet, or itself a deletion)", room, seq)})
	case err != nil:
		e := ownerError(err)
		writeError(w, statusOf(e), e)
	default:
		h.log.Info("message deleted through the API", "room", room, "seq", seq, "by", by, "deletion_seq", ack.Seq)
		writeJSON(w, http.StatusOK, Deleted{Room: room, Seq: seq, DeletionSeq: ack.Seq, Epoch: epochOfMID(ack.MID)})
	}
}

func (h *handler) broadcast(w http.ResponseWriter, r *http.Request) {
	var req BroadcastRequest
	limit := h.maxBody + int64(MaxBroadcastRooms)*(6*protocol.MaxRoomLen+3)
	if e, status := decode(w, r, limit, &req); e != nil {
		writeError(w, status, e)
		return
	}
	if len(req.Rooms) == 0 || len(req.Rooms) > MaxBroadcastRooms {
		writeError(w, http.StatusBadRequest, &Error{Code: CodeBadRequest, Field: "rooms", Message: fmt.Sprintf("rooms: want 1 to %d rooms, got %d", MaxBroadcastRooms, len(req.Rooms))})
		return
	}
	seen := make(map[string]bool, len(req.Rooms))
	for i, room := range req.Rooms {
		field := fmt.Sprintf("rooms[%d]", i)
		if err := protocol.ValidateRoom(room); err != nil {
			writeError(w, http.StatusBadRequest, &Error{Code: CodeInvalidRoom, Field: field, Message: field + ": " + err.Error()})
			return
		}
		if seen[room] {
			writeError(w, http.StatusBadRequest, &Error{Code: CodeBadRequest, Field: field, Message: field + ": the room is listed twice"})
			return
		}
		seen[room] = true
	}
	user, cid, e := h.checkMessage(req.User, req.Text, req.IdempotencyKey)
	if e != nil {
		writeError(w, http.StatusBadRequest, e)
		return
	}
	writeJSON(w, http.StatusOK, BroadcastResponse{Results: h.publishAll(r, req.Rooms, user, cid, req.Text)})
}

// publishAll publishes text to every room at once and waits for every
// answer, or for the timeout or the caller's leaving, whichever comes
// first; rooms left unanswered get unavailable.
func (h *handler) publishAll(r *http.Request, rooms []string, user, cid, text string) []BroadcastResult {
	type answer struct {
		i   int
		ack protocol.Ack
		err error
	}
	// Buffered for every answer: a reply that comes after the handler
	// gave up never blocks the owner's goroutine.
	answers := make(chan answer, len(rooms))
	for i, room := range rooms {
		h.cfg.Router.Publish(room, user, cid, text, func(ack protocol.Ack, err error) {
			answers <- answer{i, ack, err}
		})
	}
	results := make([]BroadcastResult, len(rooms))
	for i, room := range rooms {
		results[i] = BroadcastResult{Room: room}
	}
	answered := make([]bool, len(rooms))
	timer := time.NewTimer(h.cfg.Timeout)
	defer timer.Stop()
	for left := len(rooms); left > 0; left-- {
		select {
		case a := <-answers:
			answered[a.i] = true
			res := &results[a.i]
			if a.err != nil {
				res.Error = ownerError(a.err)
				h.log.Debug("API publish refused", "room", res.Room, "err", a.err)
				continue
			}
			res.Seq, res.Epoch, res.TS, res.Duplicate = a.ack.Seq, epochOfMID(a.ack.MID), a.ack.TS, a.ack.Duplicate
		case <-timer.C:
			return timedOut(results, answered)
		case <-r.Context().Done():
			return timedOut(results, answered)
		}
	}
	return results
}

// timedOut marks the rooms without an answer unavailable.
func timedOut(results []BroadcastResult, answered []bool) []BroadcastResult {
	for i := range results {
		if !answered[i] {
			results[i].Error = &Error{Code: CodeUnavailable, Message: "the room's owner did not answer in time; the message may be stored: retry with the same idempotency_key"}
		}
	}
	return results
}

// epochOfMID reads the epoch from a message id ("<epoch>-<seq>").
func epochOfMID(mid string) string {
	if i := strings.LastIndexByte(mid, '-'); i >= 0 {
		return mid[:i]
	}
	return ""
}

// checkMessage validates a publish's members as the client protocol
// would, and returns the sender and the client id to publish with.
func (h *handler) checkMessage(user, text, key string) (string, string, *Error) {
	if user == "" {
		user = SystemSender
	} else if err := validateUser(user); err != nil {
		return "", "", &Error{Code: CodeBadRequest, Field: "user", Message: "user: " + err.Error()}
	}
	if text == "" {
		return "", "", &Error{Code: CodeBadRequest, Field: "text", Message: "text: a message needs a non-empty text"}
	}
	if len(text) > h.cfg.MaxTextBytes {
		return "", "", &Error{Code: CodeTextTooLong, Field: "text", Message: fmt.Sprintf("text: longer than %d bytes", h.cfg.MaxTextBytes)}
	}
	if key == "" {
		var b [16]byte
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
		return user, CIDPrefix + hex.EncodeToString(b[:]), nil
	}
	if len(key) > MaxIdempotencyKeyLen {
		return "", "", &Error{Code: CodeBadRequest, Field: "idempotency_key", Message: fmt.Sprintf("idempotency_key: longer than %d bytes", MaxIdempotencyKeyLen)}
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < 0x21 || c > 0x7e {
			return "", "", &Error{Code: CodeBadRequest, Field: "idempotency_key", Message: fmt.Sprintf("idempotency_key: character %d is not printable ASCII (no spaces)", i+1)}
		}
	}
	return user, CIDPrefix + key, nil
}

// validateUser checks a sender as chatd checks a token's subject: 1 to
// MaxUserLen bytes of printable UTF-8.
func validateUser(user string) error {
	if len(user) > MaxUserLen {
		return fmt.Errorf("longer than %d bytes", MaxUserLen)
	}
	if !utf8.ValidString(user) {
		return errors.New("not valid UTF-8")
	}
	for i, r := range user {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("non-printable character %U at byte %d", r, i)
		}
	}
	return nil
}

func (h *handler) history(w http.ResponseWriter, r *http.Request) {
	room := r.PathValue("room")
	if err := protocol.ValidateRoom(room); err != nil {
		writeError(w, http.StatusBadRequest, &Error{Code: CodeInvalidRoom, Field: "room", Message: "room: " + err.Error()})
		return
	}
	q := r.URL.Query()
	for name := range q {
		if name != "before" && name != "limit" {
			writeError(w, http.StatusBadRequest, &Error{Code: CodeBadRequest, Field: name, Message: fmt.Sprintf("%s: unknown query parameter (before, limit)", truncate(name, 32))})
			return
		}
	}
	before, e := uintParam(q.Get("before"), "before", 0, 0, protocol.MaxSeq)
	if e != nil {
		writeError(w, http.StatusBadRequest, e)
		return
	}
	limit, e := uintParam(q.Get("limit"), "limit", DefaultHistoryLimit, 1, protocol.MaxHistoryReq)
	if e != nil {
		writeError(w, http.StatusBadRequest, e)
		return
	}
	page, err := awaitOne(h, w, r, "the room's owner did not answer in time; retry",
		func(reply func(protocol.HistoryPage, error)) { h.cfg.Router.History(room, before, int(limit), reply) })
	switch {
	case errors.Is(err, errAnswered):
	case err != nil:
		e := ownerError(err)
		writeError(w, statusOf(e), e)
	default:
		resp := HistoryResponse{Room: room, Epoch: page.Epoch, Head: page.Head, Oldest: page.Oldest, More: page.More, Messages: make([]Message, 0, len(page.Messages))}
		for _, m := range page.Messages {
			resp.Messages = append(resp.Messages, Message{Type: m.Type, Seq: m.Seq, MID: m.MID, From: m.From, CID: m.CID, Text: m.Text, Deleted: m.Deleted, Target: m.Target, TS: m.TS})
		}
		writeJSON(w, http.StatusOK, resp)
	}
}

// errAnswered is awaitOne's error when the request needs no more answer:
// the timeout passed (awaitOne wrote the 503) or the caller left.
var errAnswered = errors.New("api: the request was answered while waiting")

// awaitOne makes one call to the cluster and waits for its answer within
// the API's timeout. Past the timeout it answers 503 unavailable with
// late as the message; either way it then returns errAnswered.
func awaitOne[T any](h *handler, w http.ResponseWriter, r *http.Request, late string, call func(reply func(T, error))) (T, error) {
	type answer struct {
		v   T
		err error
	}
	// Buffered: an answer after the handler gave up never blocks the
	// owner's goroutine.
	answers := make(chan answer, 1)
	call(func(v T, err error) { answers <- answer{v, err} })
	timer := time.NewTimer(h.cfg.Timeout)
	defer timer.Stop()
	select {
	case a := <-answers:
		return a.v, a.err
	case <-timer.C:
		e := &Error{Code: CodeUnavailable, Message: late}
		writeError(w, statusOf(e), e)
	case <-r.Context().Done():
	}
	var zero T
	return zero, errAnswered
}

// uintParam parses an optional unsigned query parameter within [lo, hi].
func uintParam(s, name string, def, lo, hi uint64) (uint64, *Error) {
	if s == "" {
		return def, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v < lo || v > hi {
		return 0, &Error{Code: CodeBadRequest, Field: name, Message: fmt.Sprintf("%s: want an integer from %d to %d", name, lo, hi)}
	}
	return v, nil
}

// decode reads a JSON body into v: one object, no unknown members, at
// most limit bytes.
func decode(w http.ResponseWriter, r *http.Request, limit int64, v any) (*Error, int) {
	body := http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		// Nothing but spaces may follow the object.
		if _, extra := dec.Token(); extra != io.EOF {
			err = errors.New("data after the JSON object")
		}
	}
	if err == nil {
		return nil, 0
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &Error{Code: CodeBodyTooLarge, Message: fmt.Sprintf("the body is larger than %d bytes", mbe.Limit)}, http.StatusRequestEntityTooLarge
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) && typeErr.Field != "" {
		return &Error{Code: CodeBadJSON, Field: typeErr.Field, Message: fmt.Sprintf("%s: want a JSON %s", typeErr.Field, typeErr.Type.Kind())}, http.StatusBadRequest
	}
	if field, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		field = strings.Trim(field, `"`)
		return &Error{Code: CodeBadJSON, Field: truncate(field, 32), Message: fmt.Sprintf("unknown member %q", truncate(field, 32))}, http.StatusBadRequest
	}
	if errors.Is(err, io.EOF) {
		return &Error{Code: CodeBadJSON, Message: "the body is empty: want a JSON object"}, http.StatusBadRequest
	}
	return &Error{Code: CodeBadJSON, Message: "the body is not one JSON object: " + shortJSONError(err)}, http.StatusBadRequest
}

func shortJSONError(err error) string {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Sprintf("syntax error at byte %d", syn.Offset)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "unexpected end"
	}
	return truncate(err.Error(), 80)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
