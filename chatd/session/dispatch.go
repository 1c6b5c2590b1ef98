package session

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ringchat/ringchat/chatd/hooks"
	"github.com/ringchat/ringchat/chatd/hub"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// dispatch handles one frame of an authenticated connection.
func (s *Session) dispatch(f *protocol.ClientFrame) {
	switch f.Type {
	case protocol.TypeHello:
		s.sendError(protocol.NewError(protocol.CodeAlreadyAuthenticated, f.ID, "this connection is already authenticated"))
	case protocol.TypePing:
		s.send(protocol.Encode(protocol.Pong{Type: protocol.TypePong, ID: f.ID, TS: time.Now().UnixMilli()}))
	case protocol.TypeJoin:
		s.join(f)
	case protocol.TypeLeave:
		if !s.deps.Hub.Leave(s, f.Room) {
			s.sendError(roomError(protocol.CodeNotJoined, f, "this connection has not joined the room"))
			return
		}
		s.forgetRoom(f.Room)
		s.send(protocol.Encode(protocol.Left{Type: protocol.TypeLeft, ID: f.ID, Room: f.Room}))
	case protocol.TypeSend:
		s.publish(f)
	case protocol.TypeHistory:
		if !s.identity.CanJoin(f.Room) {
			s.sendError(roomError(protocol.CodeForbidden, f, "your token does not allow this room"))
			return
		}
		limit := f.Limit
		if limit == 0 {
			limit = s.cfg.HistoryLimit
		}
		s.deps.Hub.History(s, f.ID, f.Room, f.Before, limit)
	case protocol.TypeDM:
		if len(f.Text) > s.cfg.MaxTextBytes {
			s.sendError(protocol.NewError(protocol.CodeTextTooLong, f.ID, textTooLong(s.cfg.MaxTextBytes)))
			return
		}
		s.directMessage(f)
	case protocol.TypeTyping:
		if err := s.deps.Hub.Typing(s, f.Room); err != nil {
			err.ID = f.ID
			s.sendError(err)
		}
	}
}

// directMessage hands a dm to the hub and waits until its ack is queued
// before the read loop goes on to the next frame. The ack waits for every
// node to deliver the dm (on a single node too, on another goroutine), so
// without the wait the replies to later requests would overtake it, while
// docs/protocol.md §3.4 promises replies in request order. Waiting here
// keeps that promise at the price of serving one connection's dm requests
// one at a time: a dm costs the connection's next frame one round trip to
// the other nodes (at most the cluster's call timeout, while a peer is
// unreachable but not yet declared dead). Room messages keep flowing to the
// connection meanwhile; only its own requests wait.
func (s *Session) directMessage(f *protocol.ClientFrame) {
	w := &ackWaiter{Session: s, queued: make(chan struct{})}
	s.deps.Hub.DirectMessage(w, f.ID, f.To, f.CID, f.Text)
	select {
	case <-w.queued:
	case <-s.writerDone:
		// The connection is finished; nothing more will be written to it.
	}
}

// ackWaiter is the session as the hub sees it for one dm request: the hub
// queues exactly one frame through it, the request's ack (a first one or a
// duplicate's), and the waiter records that it did.
type ackWaiter struct {
	*Session
	queued chan struct{}
	once   sync.Once
}

// Enqueue implements hub.Conn.
func (w *ackWaiter) Enqueue(frame []byte) {
	w.Session.Enqueue(frame)
	w.once.Do(func() { close(w.queued) })
}

func roomError(code string, f *protocol.ClientFrame, msg string) *protocol.Error {
	e := protocol.NewError(code, f.ID, msg)
	e.Room = f.Room
	return e
}

func textTooLong(limit int) string {
	return "text longer than " + strconv.Itoa(limit) + " bytes"
}

// allow meters one incoming frame against the connection's token bucket.
// Refused frames get a rate_limited error; a client that keeps going past
// RateAbuseLimit refusals within RateAbuseWindow is disconnected with 1008.
func (s *Session) allow(f *protocol.ClientFrame) bool {
	ok, abusive := s.meter.Allow()
	if ok {
		return true
	}
	s.deps.Metrics.RateLimited.Inc()
	if abusive {
		s.log.Warn("closing connection for sustained rate limit abuse", s.logAttrs()...)
		s.fail(protocol.ClosePolicyViolation, "rate limit exceeded repeatedly")
		return false
	}
	e := protocol.NewError(protocol.CodeRateLimited, "", "too many frames; slow down and retry")
	if f != nil {
		e.ID, e.Room = f.ID, f.Room
	}
	s.sendError(e)
	return false
}

func (s *Session) join(f *protocol.ClientFrame) {
	if !s.identity.CanJoin(f.Room) {
		s.sendError(roomError(protocol.CodeForbidden, f, "your token does not allow this room"))
		return
	}
	if j := s.deps.Hooks.Joiner(); j != nil {
		// On the read loop's goroutine, holding no lock: a slow backend
		// delays this connection's next frames only.
		v := j.Join(context.Background(), hooks.JoinRequest{Transport: hooks.TransportWS, Session: s.id,
			User: s.identity.UserID, Anonymous: s.identity.Anonymous, Room: f.Room, Since: f.Since})
		if !v.Allowed {
			s.sendError(v.Refusal(hooks.HookJoin, f.ID, f.Room))
			return
		}
	}
	s.roomsMu.Lock()
	joined := slices.Contains(s.rooms, f.Room)
	if !joined && len(s.rooms) >= s.cfg.MaxRooms {
		s.roomsMu.Unlock()
		s.sendError(roomError(protocol.CodeTooManyRooms, f, "this connection has joined the maximum of "+strconv.Itoa(s.cfg.MaxRooms)+" rooms"))
		return
	}
	if !joined {
		s.rooms = append(s.rooms, f.Room)
	}
	s.roomsMu.Unlock()
	room := f.Room
	s.deps.Hub.Join(s, hub.JoinRequest{ID: f.ID, Room: room, Epoch: f.Epoch, Since: f.Since,
		OnFail: func() { s.forgetRoom(room) }})
}

func (s *Session) publish(f *protocol.ClientFrame) {
	start := time.Now()
	if len(f.Text) > s.cfg.MaxTextBytes {
		s.sendError(roomError(protocol.CodeTextTooLong, f, textTooLong(s.cfg.MaxTextBytes)))
		return
	}
	text := f.Text
	if h := s.deps.Hooks.Sender(); h != nil {
		var perr *protocol.Error
		if text, perr = hooks.CheckSend(h, hooks.SendRequest{Transport: hooks.TransportWS, Session: s.id,
			User: s.identity.UserID, Anonymous: s.identity.Anonymous, Room: f.Room, CID: f.CID, Text: text},
			f.ID, s.cfg.MaxTextBytes); perr != nil {
			s.sendError(perr)
			return
		}
	}
	s.deps.Hub.Publish(s, f.ID, f.Room, f.CID, text, start)
}

// Evicted implements hub.Evictable: the server made the connection leave
// room (a kick), so its slot is free.
func (s *Session) Evicted(room string) { s.forgetRoom(room) }

// Enroll implements hub.Enrollable: the server joins the connection to
// room (the backend subscribed its user), within its room limit.
func (s *Session) Enroll(room string) (ok, already bool) {
	s.roomsMu.Lock()
	defer s.roomsMu.Unlock()
	if slices.Contains(s.rooms, room) {
		return true, true
	}
	if len(s.rooms) >= s.cfg.MaxRooms {
		return false, false
	}
	s.rooms = append(s.rooms, room)
	return true, false
}

// forgetRoom frees a room's slot: after a leave, or when a join failed (the
// hub calls back from another goroutine, hence the lock).
func (s *Session) forgetRoom(room string) {
	s.roomsMu.Lock()
	defer s.roomsMu.Unlock()
	if i := slices.Index(s.rooms, room); i >= 0 {
		s.rooms = slices.Delete(s.rooms, i, i+1)
	}
}
