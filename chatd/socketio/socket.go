package socketio

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringchat/ringchat/chatd/auth"
	"github.com/ringchat/ringchat/chatd/hooks"
	"github.com/ringchat/ringchat/chatd/hub"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// socket is one Socket.IO namespace connection on an Engine.IO session.
// It is a hub.Conn: the hub sees it exactly as a native session.
type socket struct {
	e        *engineSession
	ns       Namespace
	prefix   string // native room name prefix: "" for "/", "/support/" for "/support"
	id       string
	identity auth.Identity
	expiry   *time.Timer
	torn     atomic.Bool
	// registered is set once the hub knows the socket (it then must leave
	// its rooms and be unregistered).
	registered atomic.Bool

	// rooms holds the native names of the rooms joined (MaxRooms, leave
	// on disconnect); since holds the position a resuming join asked for,
	// read by the writer when its joined frame passes.
	roomsMu sync.Mutex
	rooms   []string
	since   map[string]uint64

	// Recovery: while recovering, frames are held until every room of the
	// offset has answered, then written after the CONNECT (recovered) or
	// dropped (not recovered). state is read without the lock on the hot
	// path.
	state   atomic.Int32
	recMu   sync.Mutex
	rec     *recovery
	recPID  string
	pid     string
	offsets bool

	// positions are the socket's rooms as far as the client has been sent
	// them; only the writer touches them.
	positions []position
}

const (
	stateLive       = 0
	stateRecovering = 1
	stateDropping   = 2
)

// recovery is an attempt to restore a socket's rooms from its offset.
type recovery struct {
	// waiting holds the native rooms whose answer is not complete: awaiting
	// their joined frame (awaitJoined), then the end of their replay (the
	// joined frame's head).
	waiting map[string]uint64
	since   map[string]uint64
	held    [][]byte
	ok      bool
	started time.Time
}

// awaitJoined marks a recovering room whose joined frame has not come.
const awaitJoined = ^uint64(0)

// connectPlaceholder stands for the CONNECT packet in a recovery's held
// frames until the outcome decides which pid it carries.
var connectPlaceholder = []byte{0xff}

// SessionID implements hub.Conn.
func (s *socket) SessionID() string { return s.id }

// Transport implements hub.Described.
func (s *socket) Transport() string { return hub.TransportSocketIO }

// UserID implements hub.Conn.
func (s *socket) UserID() string { return s.identity.UserID }

// Enqueue implements hub.Conn: it never blocks and never calls the hub.
func (s *socket) Enqueue(frame []byte) {
	if s.state.Load() != stateLive {
		s.enqueueSlow(frame)
		return
	}
	s.e.push(item{s: s, frame: frame})
}

func (s *socket) enqueueSlow(frame []byte) {
	s.recMu.Lock()
	defer s.recMu.Unlock()
	switch s.state.Load() {
	case stateLive:
		s.e.push(item{s: s, frame: frame})
	case stateDropping:
		// Rooms of a failed recovery being left: their frames are not for
		// this socket any more.
	case stateRecovering:
		r := s.rec
		r.held = append(r.held, frame)
		s.noteRecoveryFrame(frame)
		if len(r.waiting) == 0 {
			s.decideRecovery()
		}
	}
}

// noteRecoveryFrame follows the answers to a recovery's joins. Callers
// hold recMu.
func (s *socket) noteRecoveryFrame(frame []byte) {
	r := s.rec
	switch {
	case bytes.HasPrefix(frame, []byte(`{"type":"joined"`)):
		var j protocol.Joined
		if json.Unmarshal(frame, &j) != nil || j.ID != "" || r.waiting[j.Room] != awaitJoined {
			return
		}
		switch {
		case j.Recovered == nil || !*j.Recovered:
			delete(r.waiting, j.Room)
			r.ok = false
		case j.Head <= r.since[j.Room]:
			delete(r.waiting, j.Room) // nothing missed
		default:
			r.waiting[j.Room] = j.Head // the replay up to head follows
		}
	case bytes.HasPrefix(frame, []byte(`{"type":"error"`)):
		var pe protocol.Error
		if json.Unmarshal(frame, &pe) == nil {
			if _, ok := r.waiting[pe.Room]; ok {
				delete(r.waiting, pe.Room)
				r.ok = false
			}
		}
	case isLogEntry(frame):
		if w := s.e.srv.cfg.RecoveryWindow; w > 0 {
			if ts, ok := messageTS(frame); ok && r.started.Sub(time.UnixMilli(ts)) > w {
				r.ok = false // a missed message older than the window
			}
		}
		if room, seq, ok := messageRoomSeq(frame); ok {
			if head, waiting := r.waiting[string(room)]; waiting && head != awaitJoined && seq >= head {
				delete(r.waiting, string(room))
			}
		}
	}
}

// decideRecovery ends a recovery once every room answered. Recovered: the
// CONNECT carries the old pid and the held frames follow it. Not
// recovered: the rooms are left and a fresh CONNECT (new pid, no rooms)
// is sent. Callers hold recMu.
func (s *socket) decideRecovery() {
	r := s.rec
	s.rec = nil
	if r.ok {
		s.pid = s.recPID
		s.e.srv.metrics.recoveries.WithLabelValues("recovered").Inc()
		for _, f := range r.held {
			if len(f) == 1 && f[0] == connectPlaceholder[0] {
				f = s.connectPacket()
			}
			s.e.push(item{s: s, frame: f})
		}
		s.state.Store(stateLive)
		return
	}
	s.e.srv.metrics.recoveries.WithLabelValues("not_recovered").Inc()
	s.state.Store(stateDropping)
	go s.abandonRecovery()
}

// abandonRecovery leaves the rooms of a failed recovery, then connects the
// socket afresh. It runs on its own goroutine: the hub may not be called
// from Enqueue.
func (s *socket) abandonRecovery() {
	s.roomsMu.Lock()
	rooms := slices.Clone(s.rooms)
	s.roomsMu.Unlock()
	for _, room := range rooms {
		s.e.srv.deps.Hub.Leave(s, room)
	}
	s.roomsMu.Lock()
	s.rooms = nil
	clear(s.since)
	s.roomsMu.Unlock()
	s.recMu.Lock()
	s.pid = newPID()
	s.e.push(item{s: s, frame: s.connectPacket()})
	s.state.Store(stateLive)
	s.recMu.Unlock()
}

// connectPacket is the CONNECT answer: the socket id and, with recovery
// on, the pid a reconnection presents.
func (s *socket) connectPacket() []byte {
	b := appendPacketHead([]byte{eioMessage}, sioConnect, s.ns.Name, -1)
	b = append(b, `{"sid":"`...)
	b = append(b, s.id...)
	if s.offsets {
		b = append(b, `","pid":"`...)
		b = append(b, s.pid...)
	}
	return append(b, `"}`...)
}

func newPID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return sidEncoding.EncodeToString(b[:])
}

// connectAuth is the CONNECT packet's auth payload.
type connectAuth struct {
	Token  string `json:"token"`
	Name   string `json:"name"`
	PID    string `json:"pid"`
	Offset string `json:"offset"`
}

// connect handles a CONNECT packet: the namespace, the credentials, and a
// recovery when the client presents its pid and offset.
func (e *engineSession) connect(p *Packet) {
	srv := e.srv
	ns, ok := srv.namespaces[p.Namespace]
	if !ok {
		e.pushRaw(connectError(p.Namespace, protocol.NewError("invalid_namespace", "", "Invalid namespace")))
		return
	}
	if e.socketFor(ns.Name) != nil {
		e.pushRaw(connectError(ns.Name, protocol.NewError(protocol.CodeAlreadyAuthenticated, "", "this namespace is already connected on this session")))
		return
	}
	var a connectAuth
	if len(p.Data) > 0 {
		if err := decodeAuth(p.Data, &a); err != nil {
			e.pushRaw(connectError(ns.Name, protocol.NewError(protocol.CodeBadRequest, "", err.Error())))
			return
		}
	}
	req := hooks.ConnectRequest{Transport: hooks.TransportSocketIO, RemoteAddr: e.remote}
	if e.facts != nil {
		req = *e.facts
	}
	req.Token, req.Name, req.Namespace = a.Token, a.Name, ns.Name
	id, err := hooks.Authenticate(context.Background(), srv.deps.Hooks.Connector(), srv.deps.Auth, req)
	if err != nil {
		var ae *auth.Error
		code, reason := "internal", "authentication failed"
		if errors.As(err, &ae) {
			code, reason = ae.Code, ae.Reason
		}
		srv.deps.Metrics.AuthFailures.WithLabelValues(code).Inc()
		e.pushRaw(connectError(ns.Name, protocol.NewError(code, "", reason)))
		return
	}
	if !mayEnter(id, ns) {
		e.pushRaw(connectError(ns.Name, protocol.NewError(protocol.CodeForbidden, "", "your credentials do not allow this namespace")))
		return
	}
	s := &socket{e: e, ns: ns, id: newSocketID(), identity: id, offsets: srv.cfg.RecoveryWindow > 0}
	if ns.Name != "/" {
		s.prefix = ns.Name + "/"
	}
	if !e.addSocket(s) {
		return
	}
	srv.deps.Metrics.FramesIn.WithLabelValues(protocol.TypeHello).Inc()
	e.mu.Lock()
	if e.connectTimer != nil {
		e.connectTimer.Stop()
	}
	e.mu.Unlock()
	if !id.ExpiresAt.IsZero() {
		s.expiry = time.AfterFunc(time.Until(id.ExpiresAt)+srv.cfg.Session.TokenLeeway, s.expire)
	}
	if s.offsets && a.PID != "" {
		if positions, ok := s.recoverable(a.Offset); ok {
			s.recover(a.PID, positions)
			return
		}
		srv.metrics.recoveries.WithLabelValues("not_recovered").Inc()
	}
	s.pid = newPID()
	s.registered.Store(true)
	srv.deps.Hub.Register(s, s.connectPacket())
}

// decodeAuth reads the auth payload; members of other types than strings
// are refused, unknown members ignored.
func decodeAuth(data []byte, a *connectAuth) error {
	if err := json.Unmarshal(data, a); err != nil {
		return errors.New("auth must be an object of strings: token, or name; pid and offset when recovering")
	}
	return nil
}

func newSocketID() string {
	var b [15]byte
	_, _ = rand.Read(b[:])
	return sidEncoding.EncodeToString(b[:])
}

// mayEnter applies a namespace's rules: token-only namespaces refuse
// anonymous identities, and a token must allow at least one room of a
// namespace other than "/" (its rooms claim applies to native room names,
// "/support/general" for room general of /support).
func mayEnter(id auth.Identity, ns Namespace) bool {
	if ns.TokenOnly && id.Anonymous {
		return false
	}
	if ns.Name == "/" || id.Rooms == nil {
		return true
	}
	prefix := ns.Name + "/"
	for _, pattern := range id.Rooms {
		if p, wild := strings.CutSuffix(pattern, "*"); wild {
			if strings.HasPrefix(p, prefix) || strings.HasPrefix(prefix, p) {
				return true
			}
		} else if strings.HasPrefix(pattern, prefix) {
			return true
		}
	}
	return false
}

// recoverable decodes an offset and checks that every room in it may be
// joined again by this identity.
func (s *socket) recoverable(offset string) ([]position, bool) {
	var positions []position
	if offset != "" {
		var err error
		if positions, err = decodeOffset(offset); err != nil {
			return nil, false
		}
	}
	if len(positions) > s.e.srv.cfg.Session.MaxRooms {
		return nil, false
	}
	seen := make(map[string]bool, len(positions))
	for i := range positions {
		native, perr := s.nativeRoom(positions[i].room)
		if perr != nil || positions[i].epoch == "" || seen[native] || !s.identity.CanJoin(native) {
			return nil, false
		}
		seen[native] = true
		positions[i].room = native
	}
	if j := s.e.srv.deps.Hooks.Joiner(); j != nil {
		// Recovery resumes every room of the offset: each is a resuming
		// join the join hook must allow, or the socket starts afresh.
		for _, p := range positions {
			since := p.seq
			if v := j.Join(context.Background(), s.joinRequest(p.room, &since)); !v.Allowed {
				return nil, false
			}
		}
	}
	return positions, true
}

// recover joins the offset's rooms again with their positions; frames are
// held until every join has answered (decideRecovery).
func (s *socket) recover(pid string, positions []position) {
	s.recMu.Lock()
	s.recPID = pid
	s.rec = &recovery{waiting: make(map[string]uint64, len(positions)), since: make(map[string]uint64, len(positions)), ok: true, started: time.Now()}
	for _, p := range positions {
		s.rec.waiting[p.room] = awaitJoined
		s.rec.since[p.room] = p.seq
	}
	s.state.Store(stateRecovering)
	s.recMu.Unlock()
	s.registered.Store(true)
	s.e.srv.deps.Hub.Register(s, connectPlaceholder)
	s.roomsMu.Lock()
	s.since = make(map[string]uint64, len(positions))
	for _, p := range positions {
		s.rooms = append(s.rooms, p.room)
		s.since[p.room] = p.seq
	}
	s.roomsMu.Unlock()
	if len(positions) == 0 {
		s.recMu.Lock()
		if s.rec != nil {
			s.decideRecovery()
		}
		s.recMu.Unlock()
		return
	}
	for _, p := range positions {
		room, since := p.room, p.seq
		s.e.srv.deps.Hub.Join(s, hub.JoinRequest{Room: room, Epoch: p.epoch, Since: &since, OnFail: func() { s.forgetRoom(room) }})
	}
}

// expire disconnects a socket whose token expired (the client must get a
// new token and connect again: a server DISCONNECT is not retried by
// Socket.IO clients).
func (s *socket) expire() {
	s.sendError(protocol.NewError("token_expired", "", "token expired"))
	s.e.pushRaw(appendPacketHead([]byte{eioMessage}, sioDisconnect, s.ns.Name, -1))
	if s.e.removeSocket(s) {
		s.teardown()
	}
}

// Close implements hub.Closer, for a backend's disconnect (the server
// API). A disconnect that allows reconnecting closes the whole Engine.IO
// session with code: Socket.IO clients reconnect after a lost transport.
// One that does not is a server DISCONNECT, which Socket.IO clients never
// retry, after an error event saying why (as for an expired token).
func (s *socket) Close(code int, reason string) {
	if code != protocol.CloseDisconnectedNoReconnect {
		s.e.Close(code, reason)
		return
	}
	s.sendError(protocol.NewError(protocol.CodeDisconnected, "", reason))
	s.e.pushRaw(appendPacketHead([]byte{eioMessage}, sioDisconnect, s.ns.Name, -1))
	if s.e.removeSocket(s) {
		s.teardown()
	}
}

// teardown leaves the socket's rooms and unregisters it, once.
func (s *socket) teardown() {
	if s.torn.Swap(true) {
		return
	}
	if s.expiry != nil {
		s.expiry.Stop()
	}
	if !s.registered.Load() {
		return
	}
	s.roomsMu.Lock()
	rooms := slices.Clone(s.rooms)
	s.roomsMu.Unlock()
	for _, room := range rooms {
		s.e.srv.deps.Hub.Leave(s, room)
	}
	s.e.srv.deps.Hub.Unregister(s)
}

func (s *socket) sendError(pe *protocol.Error) {
	s.e.srv.deps.Metrics.ErrorFrames.WithLabelValues(pe.Code).Inc()
	s.Enqueue(protocol.Encode(pe))
}

// nativeRoom maps a client's room name to the native one: unchanged in the
// main namespace (where names starting with "/" are reserved for the other
// namespaces' rooms), prefixed with the namespace elsewhere.
func (s *socket) nativeRoom(room string) (string, *protocol.Error) {
	if s.prefix == "" {
		if strings.HasPrefix(room, "/") {
			return "", protocol.NewError(protocol.CodeInvalidRoom, "", "room names starting with \"/\" are reserved for namespaces")
		}
		if err := protocol.ValidateRoom(room); err != nil {
			return "", protocol.NewError(protocol.CodeInvalidRoom, "", err.Error())
		}
		return room, nil
	}
	native := s.prefix + room
	if err := protocol.ValidateRoom(room); err != nil {
		return "", protocol.NewError(protocol.CodeInvalidRoom, "", err.Error())
	}
	if len(native) > protocol.MaxRoomLen {
		return "", protocol.NewError(protocol.CodeInvalidRoom, "", "room name longer than "+strconv.Itoa(protocol.MaxRoomLen-len(s.prefix))+" bytes in namespace "+s.ns.Name)
	}
	return native, nil
}

// events are the event names clients may emit, each a native operation.
var events = map[string]bool{
	protocol.TypeJoin: true, protocol.TypeLeave: true, protocol.TypeSend: true, protocol.TypeHistory: true,
	protocol.TypeDM: true, protocol.TypeTyping: true, protocol.TypePing: true,
}

// onEvent runs one event: its first argument is the native frame's
// members, its acknowledgement (when asked for) the native reply.
func (s *socket) onEvent(p *Packet) {
	id := ""
	if p.AckID >= 0 {
		id = strconv.FormatInt(p.AckID, 10)
	}
	if !events[p.Event] {
		s.e.srv.deps.Metrics.FramesIn.WithLabelValues("invalid").Inc()
		s.sendError(protocol.NewError(protocol.CodeUnknownType, id, "unknown event "+strconv.Quote(truncate(p.Event, 32))+" (docs/socketio.md lists the events)"))
		return
	}
	arg := json.RawMessage(`{}`)
	if len(p.Args) > 0 {
		arg = bytes.TrimSpace(p.Args[0])
	}
	if !isObject(arg) {
		s.e.srv.deps.Metrics.FramesIn.WithLabelValues("invalid").Inc()
		s.sendError(protocol.NewError(protocol.CodeBadFrame, id, "the first argument of an event must be an object"))
		return
	}
	f, perr := protocol.DecodeClientFrame(withTypeAndID(arg, p.Event, id))
	if perr != nil {
		s.e.srv.deps.Metrics.FramesIn.WithLabelValues("invalid").Inc()
		perr.ID = id
		s.sendError(perr)
		return
	}
	s.e.srv.deps.Metrics.FramesIn.WithLabelValues(f.Type).Inc()
	if f.Room != "" {
		native, rerr := s.nativeRoom(f.Room)
		if rerr != nil {
			rerr.ID = id
			s.sendError(rerr)
			return
		}
		f.Room = native
	}
	s.dispatch(&f)
}

// withTypeAndID appends the type and id to the client's object; the last
// occurrence of a member wins in encoding/json, so a client cannot choose
// either.
func withTypeAndID(obj []byte, typ, id string) []byte {
	body := bytes.TrimRight(obj[:len(obj)-1], " \t\r\n")
	b := make([]byte, 0, len(obj)+len(typ)+len(id)+24)
	b = append(b, body...)
	if len(bytes.TrimSpace(body[1:])) > 0 {
		b = append(b, ',')
	}
	b = append(b, `"type":`...)
	b = strconv.AppendQuote(b, typ)
	if id != "" {
		b = append(b, `,"id":`...)
		b = strconv.AppendQuote(b, id)
	}
	return append(b, '}')
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func roomError(code string, f *protocol.ClientFrame, msg string) *protocol.Error {
	e := protocol.NewError(code, f.ID, msg)
	e.Room = f.Room
	return e
}

// dispatch runs a decoded operation, as the native session does.
func (s *socket) dispatch(f *protocol.ClientFrame) {
	cfg := &s.e.srv.cfg.Session
	h := s.e.srv.deps.Hub
	switch f.Type {
	case protocol.TypePing:
		s.Enqueue(protocol.Encode(protocol.Pong{Type: protocol.TypePong, ID: f.ID, TS: time.Now().UnixMilli()}))
	case protocol.TypeJoin:
		s.join(f)
	case protocol.TypeLeave:
		if !h.Leave(s, f.Room) {
			s.sendError(roomError(protocol.CodeNotJoined, f, "this connection has not joined the room"))
			return
		}
		s.forgetRoom(f.Room)
		s.Enqueue(protocol.Encode(protocol.Left{Type: protocol.TypeLeft, ID: f.ID, Room: f.Room}))
	case protocol.TypeSend:
		if len(f.Text) > cfg.MaxTextBytes {
			s.sendError(roomError(protocol.CodeTextTooLong, f, "text longer than "+strconv.Itoa(cfg.MaxTextBytes)+" bytes"))
			return
		}
		start, text := time.Now(), f.Text
		if sh := s.e.srv.deps.Hooks.Sender(); sh != nil {
			var perr *protocol.Error
			if text, perr = hooks.CheckSend(sh, hooks.SendRequest{Transport: hooks.TransportSocketIO, Session: s.id,
				User: s.identity.UserID, Anonymous: s.identity.Anonymous, Room: f.Room, CID: f.CID, Text: text},
				f.ID, cfg.MaxTextBytes); perr != nil {
				s.sendError(perr)
				return
			}
		}
		h.Publish(s, f.ID, f.Room, f.CID, text, start)
	case protocol.TypeHistory:
		if !s.identity.CanJoin(f.Room) {
			s.sendError(roomError(protocol.CodeForbidden, f, "your token does not allow this room"))
			return
		}
		limit := f.Limit
		if limit == 0 {
			limit = cfg.HistoryLimit
		}
		h.History(s, f.ID, f.Room, f.Before, limit)
	case protocol.TypeDM:
		if len(f.Text) > cfg.MaxTextBytes {
			s.sendError(protocol.NewError(protocol.CodeTextTooLong, f.ID, "text longer than "+strconv.Itoa(cfg.MaxTextBytes)+" bytes"))
			return
		}
		h.DirectMessage(s, f.ID, f.To, f.CID, f.Text)
	case protocol.TypeTyping:
		if err := h.Typing(s, f.Room); err != nil {
			err.ID = f.ID
			s.sendError(err)
		}
	}
}

func (s *socket) join(f *protocol.ClientFrame) {
	cfg := &s.e.srv.cfg.Session
	if !s.identity.CanJoin(f.Room) {
		s.sendError(roomError(protocol.CodeForbidden, f, "your token does not allow this room"))
		return
	}
	if j := s.e.srv.deps.Hooks.Joiner(); j != nil {
		// Holding no lock: a slow backend delays this session's packets only.
		if v := j.Join(context.Background(), s.joinRequest(f.Room, f.Since)); !v.Allowed {
			s.sendError(v.Refusal(hooks.HookJoin, f.ID, f.Room))
			return
		}
	}
	s.roomsMu.Lock()
	joined := slices.Contains(s.rooms, f.Room)
	if !joined && len(s.rooms) >= cfg.MaxRooms {
		s.roomsMu.Unlock()
		s.sendError(roomError(protocol.CodeTooManyRooms, f, "this connection has joined the maximum of "+strconv.Itoa(cfg.MaxRooms)+" rooms"))
		return
	}
	if !joined {
		s.rooms = append(s.rooms, f.Room)
	}
	if f.Since != nil {
		if s.since == nil {
			s.since = make(map[string]uint64)
		}
		s.since[f.Room] = *f.Since
	}
	s.roomsMu.Unlock()
	room := f.Room
	s.e.srv.deps.Hub.Join(s, hub.JoinRequest{ID: f.ID, Room: room, Epoch: f.Epoch, Since: f.Since,
		OnFail: func() { s.forgetRoom(room) }})
}

// joinRequest is the join hook's request for a join of room (resuming
// from since when not nil).
func (s *socket) joinRequest(room string, since *uint64) hooks.JoinRequest {
	return hooks.JoinRequest{Transport: hooks.TransportSocketIO, Session: s.id,
		User: s.identity.UserID, Anonymous: s.identity.Anonymous, Room: room, Since: since}
}

// Evicted implements hub.Evictable: the server made the socket leave room
// (a kick), so its slot is free.
func (s *socket) Evicted(room string) { s.forgetRoom(room) }

// Enroll implements hub.Enrollable: the server joins the socket to room
// (the backend subscribed its user), within its room limit. The socket
// gets a joined event without acknowledgement.
func (s *socket) Enroll(room string) (ok, already bool) {
	s.roomsMu.Lock()
	defer s.roomsMu.Unlock()
	if slices.Contains(s.rooms, room) {
		return true, true
	}
	if len(s.rooms) >= s.e.srv.cfg.Session.MaxRooms {
		return false, false
	}
	s.rooms = append(s.rooms, room)
	return true, false
}

// forgetRoom frees a room's slot after a leave or a failed join.
func (s *socket) forgetRoom(room string) {
	s.roomsMu.Lock()
	defer s.roomsMu.Unlock()
	if i := slices.Index(s.rooms, room); i >= 0 {
		s.rooms = slices.Delete(s.rooms, i, i+1)
	}
	delete(s.since, room)
}

// takeSince returns (and forgets) the position a resuming join of room
// asked for.
func (s *socket) takeSince(room string) (uint64, bool) {
	s.roomsMu.Lock()
	defer s.roomsMu.Unlock()
	v, ok := s.since[room]
	if ok {
		delete(s.since, room)
	}
	return v, ok
}
