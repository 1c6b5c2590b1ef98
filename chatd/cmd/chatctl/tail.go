package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ringchat/ringchat/chatd/client"
	"github.com/ringchat/ringchat/chatd/protocol"
)

var cmdTail = &command{
	name:    "tail",
	summary: "print a room's messages as they arrive, reconnecting and resuming",
	details: `
Joins each --room and prints its messages in sequence order until Ctrl-C,
--count messages have been printed, or --timeout expires.

Without --since only new messages are printed. --since N first prints the
kept messages after sequence number N (--since 0: the whole kept history);
with --epoch E the join resumes exactly like a reconnect would.

When the connection is lost (close 1000, 1001, 1012 restart, 4002, 4008 slow
consumer, network failure) chatctl reconnects with full-jitter exponential
backoff (0.5 s doubling up to 30 s, honouring Retry-After) and resumes every
room from the last sequence number and epoch it printed, so nothing is
printed twice or skipped. When the server cannot resume (recovered=false:
the gap is older than the kept history, or the room was recreated, e.g. by
a restart) chatctl says so (a notice on stderr, or chatctl.resumed and
chatctl.gap records) and reloads the room with history. It gives up on
close 4001/4003/4004 (exit 4) and 1008/1009 (exit 1).`,
	flags: func(fs *flag.FlagSet, o *options) {
		fs.Var(&o.rooms, "room", "room to follow (required; repeat for several rooms)")
		fs.Int64Var(&o.since, "since", -1, "first print the kept messages after this sequence number (0: all kept)")
		fs.StringVar(&o.epoch, "epoch", "", "epoch that --since refers to (from an earlier joined or history frame)")
		fs.IntVar(&o.count, "count", 0, "exit after printing this many messages (0: no limit); with --timeout, exit 5 if fewer arrive")
		fs.BoolVar(&o.presence, "presence", false, "also print presence changes (users joining and leaving)")
		fs.BoolVar(&o.noRetry, "no-reconnect", false, "exit 1 when the connection is lost instead of reconnecting")
	},
	run: runTail,
}

// Tail timings.
const (
	// pingEvery is how often tail sends an application ping, so that a dead
	// server (no FIN) is noticed by the read deadline.
	pingEvery = 25 * time.Second
	// readIdleTimeout is how long tail waits for any frame.
	readIdleTimeout = 2*pingEvery + 10*time.Second
	// healthyAfter is how long a connection must last for the backoff to
	// start over from its base delay.
	healthyAfter = 10 * time.Second
)

// tailRoom is the state of one followed room.
type tailRoom struct {
	name string
	// cur is the epoch and the last sequence number printed.
	cur client.Cursor
	// since is --since, used by the first join only (-1: none).
	since int64
	// joined: the join on the current connection has been answered.
	joined bool
	// pending holds messages received ahead of cur.Seq+1 (during a reload,
	// or a replay), keyed by seq.
	pending map[uint64]pendingMessage
	// filling: a history reload up to fillTo is in progress.
	filling bool
	fillTo  uint64
	reqN    int
}

type pendingMessage struct {
	raw []byte
	msg protocol.Message
}

// tailer follows rooms across connections.
type tailer struct {
	ctx      context.Context
	e        *env
	o        *options
	rooms    map[string]*tailRoom
	order    []*tailRoom
	printed  int
	inflight map[string]protocol.ClientFrame // join/history requests by id
}

// Records of tail's JSON output.
type connectedRecord struct {
	Type    string `json:"type"`
	URL     string `json:"url"`
	User    string `json:"user"`
	Session string `json:"session"`
	Server  string `json:"server"`
}

type resumedRecord struct {
	Type          string `json:"type"`
	Room          string `json:"room"`
	Epoch         string `json:"epoch"`
	PreviousEpoch string `json:"previous_epoch,omitempty"`
	Since         uint64 `json:"since"`
	Head          uint64 `json:"head"`
	Recovered     bool   `json:"recovered"`
	Outcome       string `json:"outcome"`
}

type gapRecord struct {
	Type   string `json:"type"`
	Room   string `json:"room"`
	Epoch  string `json:"epoch"`
	From   uint64 `json:"from"`
	To     uint64 `json:"to"`
	Reason string `json:"reason"`
}

func runTail(ctx context.Context, e *env, o *options, args []string) error {
	if len(args) > 0 {
		return usageError("tail takes no arguments (did you mean send?)")
	}
	if len(o.rooms) == 0 {
		return usageError("give at least one --room")
	}
	if o.epoch != "" && o.since < 0 {
		return usageError("--epoch needs --since")
	}
	if o.since < -1 {
		return usageError("--since must be 0 or more")
	}
	if o.count < 0 {
		return usageError("--count must be 0 or more")
	}
	t := &tailer{ctx: ctx, e: e, o: o, rooms: map[string]*tailRoom{}, inflight: map[string]protocol.ClientFrame{}}
	for _, name := range o.rooms {
		if err := protocol.ValidateRoom(name); err != nil {
			return usageError("--room " + name + ": " + err.Error())
		}
		if t.rooms[name] != nil {
			return usageError("--room " + name + " given twice")
		}
		r := &tailRoom{name: name, since: o.since, pending: map[uint64]pendingMessage{}}
		if o.epoch != "" {
			r.cur = client.Cursor{Epoch: o.epoch, Seq: uint64(o.since)}
		}
		t.rooms[name] = r
		t.order = append(t.order, r)
	}

	bo := client.NewBackoff()
	established := false
	for {
		c, f := dial(ctx, o)
		if f == nil {
			start := time.Now()
			err := t.session(c, established)
			established = true
			if err == nil {
				return nil
			}
			if time.Since(start) >= healthyAfter {
				bo.Reset()
			}
			if !errors.As(err, &f) {
				return err
			}
		}
		if ended(ctx) {
			return t.stopped()
		}
		if !established || f.disp != client.Reconnect || o.noRetry {
			return f.cli(ctx, "while tailing")
		}
		delay := backoffDelay(&bo, f)
		e.out.notice(reconnectRecord{Type: "chatctl.reconnecting", Attempt: bo.Attempt(), DelayMS: delay.Milliseconds(), Reason: f.describe()},
			"connection lost (%s); reconnecting in %v (attempt %d)", f.describe(), delay.Round(time.Millisecond), bo.Attempt())
		if !client.Sleep(ctx, delay) {
			return t.stopped()
		}
	}
}

// stopped is the result of tail when its context ended: Ctrl-C and a
// --timeout without --count are the normal ways to stop; a --timeout before
// --count messages is a failure.
func (t *tailer) stopped() error {
	if timedOut(t.ctx) && t.o.count > 0 && t.printed < t.o.count {
		return &cliError{exit: exitTimeout, code: "timeout",
			msg: fmt.Sprintf("timed out after %d of %d messages", t.printed, t.o.count)}
	}
	return outputErr(t.e)
}

// done reports whether --count messages have been printed.
func (t *tailer) done() bool { return t.o.count > 0 && t.printed >= t.o.count }

// session follows the rooms on one connection. It returns nil when --count
// is reached, a *connFailure when the connection ends, or another error to
// stop tail.
func (t *tailer) session(c *client.Conn, reconnected bool) error {
	stopAbort := context.AfterFunc(t.ctx, c.Abort)
	defer stopAbort()
	defer c.Close()

	// An application ping now and then makes a silently dead server show
	// up as a read timeout.
	var wg sync.WaitGroup
	quit := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(pingEvery)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
				if c.Send(protocol.ClientFrame{Type: protocol.TypePing, ID: "keepalive"}) != nil {
					return
				}
			}
		}
	}()
	defer func() {
		close(quit)
		wg.Wait()
	}()

	rec := connectedRecord{Type: "chatctl.connected", URL: t.o.url, User: c.Welcome.User, Session: c.Welcome.Session, Server: c.Welcome.Server}
	if t.e.out.json {
		t.e.out.record(rec)
	} else if reconnected {
		t.e.out.notice(rec, "reconnected to %s as %s", t.o.url, c.Welcome.User)
	}
	clear(t.inflight)
	for _, r := range t.order {
		r.joined, r.filling = false, false
		var req protocol.ClientFrame
		if r.cur.Known() {
			req = r.cur.JoinFrame("j:"+r.name, r.name)
		} else {
			req = protocol.ClientFrame{Type: protocol.TypeJoin, ID: "j:" + r.name, Room: r.name}
		}
		if err := t.request(c, req); err != nil {
			return err
		}
	}

	for {
		if err := t.e.out.err; err != nil {
			return ioError(err)
		}
		if t.done() {
			return nil
		}
		_ = c.SetReadDeadline(time.Now().Add(readIdleTimeout))
		f, err := c.Read()
		if err != nil {
			return lostConn(err)
		}
		if err := t.handle(c, f); err != nil {
			return err
		}
	}
}

// request sends a join or history frame, remembering it for a resend after
// rate_limited.
func (t *tailer) request(c *client.Conn, req protocol.ClientFrame) error {
	t.inflight[req.ID] = req
	if err := c.Send(req); err != nil {
		return lostConn(err)
	}
	return nil
}

// roomOf returns the room a request id ("j:room", "h:room:n") belongs to.
func (t *tailer) roomOf(id string) *tailRoom {
	kind, rest, ok := strings.Cut(id, ":")
	if !ok || (kind != "j" && kind != "h") {
		return nil
	}
	if kind == "h" {
		if i := strings.LastIndexByte(rest, ':'); i >= 0 {
			rest = rest[:i]
		}
	}
	return t.rooms[rest]
}

func (t *tailer) handle(c *client.Conn, f client.Frame) error {
	switch f.Type {
	case protocol.TypeMessage, protocol.TypeDeleted:
		var m protocol.Message
		if err := f.Decode(&m); err != nil {
			return fmt.Errorf("decode message: %w", err)
		}
		if r := t.rooms[m.Room]; r != nil && r.joined {
			return t.onMessage(c, r, f.Raw, m)
		}
	case protocol.TypeJoined:
		var j protocol.Joined
		if err := f.Decode(&j); err != nil {
			return fmt.Errorf("decode joined: %w", err)
		}
		if r := t.roomOf(j.ID); r != nil && strings.HasPrefix(j.ID, "j:") {
			delete(t.inflight, j.ID)
			return t.onJoined(c, r, j)
		}
	case protocol.TypeHistory:
		var p historyPage
		var head struct {
			ID string `json:"id"`
		}
		if err := f.Decode(&p); err != nil {
			return fmt.Errorf("decode history: %w", err)
		}
		_ = f.Decode(&head)
		if _, ok := t.inflight[head.ID]; !ok {
			return nil // a reply to a request of an earlier reload
		}
		delete(t.inflight, head.ID)
		if r := t.roomOf(head.ID); r != nil {
			return t.onHistory(c, r, p)
		}
	case protocol.TypePresence:
		if t.o.presence {
			t.printPresence(f)
		}
	case protocol.TypeError:
		var pe protocol.Error
		if err := f.Decode(&pe); err != nil {
			return fmt.Errorf("decode error frame: %w", err)
		}
		req, ours := t.inflight[pe.ID]
		if !ours {
			return nil // e.g. a keepalive ping refused by the rate limiter
		}
		if pe.Code == protocol.CodeRateLimited {
			if !client.Sleep(t.ctx, ratePause(c)) {
				return lostConn(t.ctx.Err())
			}
			return t.request(c, req)
		}
		return serverError(pe)
	}
	return nil
}

func (t *tailer) onJoined(c *client.Conn, r *tailRoom, j protocol.Joined) error {
	r.joined = true
	if !r.cur.Known() {
		// First join without a cursor: start at the head, or reload from
		// --since.
		r.cur.Epoch = j.Epoch
		if r.since < 0 {
			r.cur.Seq = j.Head
			return nil
		}
		r.cur.Seq = uint64(r.since)
		return t.startFill(c, r, j.Head)
	}
	outcome := r.cur.Outcome(j)
	rec := resumedRecord{Type: "chatctl.resumed", Room: r.name, Epoch: j.Epoch, Since: r.cur.Seq, Head: j.Head,
		Recovered: outcome == client.Recovered || outcome == client.Fresh, Outcome: outcome.String()}
	switch outcome {
	case client.Recovered, client.Fresh:
		t.e.out.notice(rec, "%s: resumed after #%d, nothing missed", r.name, r.cur.Seq)
		return nil
	case client.Gap:
		t.e.out.notice(rec, "%s: cannot resume after #%d (recovered=false): part of what followed is no longer kept; reloading the room with history", r.name, r.cur.Seq)
		return t.startFill(c, r, j.Head)
	default: // client.NewEpoch
		rec.PreviousEpoch = r.cur.Epoch
		t.e.out.notice(rec, "%s: cannot resume (recovered=false): the room was recreated (epoch %s -> %s, e.g. the server restarted) and its sequence numbers started again at 1; messages of the old epoch after #%d may be lost; reloading the room with history",
			r.name, r.cur.Epoch, j.Epoch, r.cur.Seq)
		r.cur = client.Cursor{Epoch: j.Epoch}
		clear(r.pending)
		return t.startFill(c, r, j.Head)
	}
}

// startFill reloads messages cur.Seq+1 … to with history, newest page
// first; live messages meanwhile wait in pending.
func (t *tailer) startFill(c *client.Conn, r *tailRoom, to uint64) error {
	if to <= r.cur.Seq {
		return nil
	}
	r.filling, r.fillTo = true, to
	return t.requestPage(c, r, to+1)
}

func (t *tailer) requestPage(c *client.Conn, r *tailRoom, before uint64) error {
	r.reqN++
	limit := min(before-1-r.cur.Seq, protocol.MaxHistoryReq)
	return t.request(c, protocol.ClientFrame{Type: protocol.TypeHistory, ID: fmt.Sprintf("h:%s:%d", r.name, r.reqN),
		Room: r.name, Before: before, Limit: int(limit)})
}

func (t *tailer) onHistory(c *client.Conn, r *tailRoom, p historyPage) error {
	if !r.filling {
		return nil
	}
	if p.Epoch != r.cur.Epoch {
		// Recreated between the join and this reply: reconnecting resumes
		// with the old epoch, which takes the new-epoch path.
		return &connFailure{err: errors.New("room recreated while reloading history"), disp: client.Reconnect, lost: true}
	}
	lowest := uint64(0)
	for i, raw := range p.Messages {
		var m protocol.Message
		if err := json.Unmarshal(raw, &m); err != nil {
			return fmt.Errorf("decode history message: %w", err)
		}
		if i == 0 {
			lowest = m.Seq
		}
		if m.Seq > r.cur.Seq {
			r.pending[m.Seq] = pendingMessage{raw: raw, msg: m}
		}
	}
	if len(p.Messages) > 0 && p.More && lowest > r.cur.Seq+1 {
		return t.requestPage(c, r, lowest)
	}
	// The reload is complete: whatever still separates cur.Seq from the
	// first message we hold is gone for good.
	r.filling = false
	next := r.cur.Seq + 1
	if _, ok := r.pending[next]; !ok {
		hi := r.fillTo
		for seq := range r.pending {
			if seq-1 < hi {
				hi = seq - 1
			}
		}
		if hi >= next {
			t.e.out.notice(gapRecord{Type: "chatctl.gap", Room: r.name, Epoch: r.cur.Epoch, From: next, To: hi, Reason: "no longer kept in the room's history"},
				"%s: messages #%d to #%d are no longer kept by the server and cannot be shown", r.name, next, hi)
			r.cur.Seq = hi
		}
	}
	t.drain(r)
	return nil
}

func (t *tailer) onMessage(c *client.Conn, r *tailRoom, raw []byte, m protocol.Message) error {
	if m.Seq <= r.cur.Seq {
		return nil // already printed (replay overlapping a reload)
	}
	r.pending[m.Seq] = pendingMessage{raw: raw, msg: m}
	if !r.filling && m.Seq > r.cur.Seq+1 {
		// The live stream is gapless by contract; should it ever skip,
		// fetch the missing part rather than print out of order.
		if err := t.startFill(c, r, m.Seq-1); err != nil {
			return err
		}
	}
	t.drain(r)
	return nil
}

// drain prints the pending messages that follow cur.Seq.
func (t *tailer) drain(r *tailRoom) {
	if r.filling {
		return
	}
	for !t.done() {
		pm, ok := r.pending[r.cur.Seq+1]
		if !ok {
			break
		}
		delete(r.pending, r.cur.Seq+1)
		r.cur.Seq++
		t.e.out.message(pm.raw, &pm.msg)
		t.printed++
	}
	// Drop what can no longer be printed.
	for seq := range r.pending {
		if seq <= r.cur.Seq {
			delete(r.pending, seq)
		}
	}
}

func (t *tailer) printPresence(f client.Frame) {
	if t.e.out.json {
		t.e.out.frame(f.Raw)
		return
	}
	var p protocol.Presence
	if err := f.Decode(&p); err != nil {
		return
	}
	switch {
	case len(p.Joined) > 0:
		t.e.out.text("%s: %s joined (%d present)", p.Room, strings.Join(p.Joined, ", "), p.Count)
	case len(p.Left) > 0:
		t.e.out.text("%s: %s left (%d present)", p.Room, strings.Join(p.Left, ", "), p.Count)
	case len(p.Present) > 0:
		t.e.out.text("%s: %d present: %s", p.Room, p.Count, strings.Join(p.Present, ", "))
	default:
		t.e.out.text("%s: %d present", p.Room, p.Count)
	}
}
