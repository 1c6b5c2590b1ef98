package deliverycheck

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/ringchat/ringchat/chatd/client"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// Client policy of MultiRoom's clients (docs/protocol.md §12 leaves the
// numbers to the client). They are not windows any check relies on.
const (
	// reconnectBase and reconnectMax bound the full-jitter backoff between
	// connection attempts: short, so that the stall a subscriber sees is the
	// cluster's doing, not the client's.
	reconnectBase = 50 * time.Millisecond
	reconnectMax  = time.Second
	// retryBackoff is the ceiling of the jittered pause before a join or a
	// send refused with unavailable (or rate_limited) is sent again.
	retryBackoff = 200 * time.Millisecond
	// driverTick is how often a client looks for joins and resends that
	// are due.
	driverTick = 20 * time.Millisecond
)

// actor is one client of a MultiRoom: a name, a home node, and the state
// that outlives its connections. Everything but the constants is guarded
// by MultiRoom.mu.
type actor struct {
	k    *MultiRoom
	name string
	home int
	// interval is the pause between two new messages; 0 for a subscriber.
	interval time.Duration

	rooms map[string]*roomTrack
	// pending holds the messages not acknowledged yet, by cid; inflight
	// the cid pending in each room (one at a time per room).
	pending  map[string]*pendingSend
	inflight map[string]string
	// texts keeps the text of every message sent, by cid, for the
	// duplicate acks that come after the first one.
	texts       map[string]string
	made        int
	next        int // the room to publish in next, round robin
	nextPublish time.Time
	// current is the connection in use (nil between connections).
	current *session
}

// roomTrack is what a client knows of a room: its cursor (epoch and last
// contiguous seq, as docs/protocol.md §12.4 asks a client to keep), what it
// received of each epoch, and when it heard from the room.
type roomTrack struct {
	cursor client.Cursor
	epochs map[string]*epochLog
	events []event
}

// epochLog is what a client received of one incarnation of a room, and
// which of its seqs it was owed: every seq after from (the head when it
// came in), up to end if it left the epoch for a newer one, except the
// gaps the server announced (recovered:false in the same epoch).
type epochLog struct {
	from    uint64
	end     uint64
	ended   bool
	excused [][2]uint64 // (a, b] ranges
	got     map[uint64]content
}

// owes reports whether the client was owed seq of this epoch.
func (e *epochLog) owes(seq uint64) bool {
	if seq <= e.from || (e.ended && seq > e.end) {
		return false
	}
	for _, x := range e.excused {
		if seq > x[0] && seq <= x[1] {
			return false
		}
	}
	return true
}

// event is a client hearing from a room (a joined or a message): when, on
// which node, and where its cursor stood after it.
type event struct {
	at    time.Time
	epoch string
	last  uint64
	url   string
}

// pendingSend is a message not acknowledged yet.
type pendingSend struct {
	room, cid, text string
	// on is the connection it was last sent on, at sentAt; retryAt, when
	// set, is when to send it again after an error.
	on      *session
	sentAt  time.Time
	retryAt time.Time
}

func newActor(k *MultiRoom, name string, home int, interval time.Duration) *actor {
	a := &actor{k: k, name: name, home: home, interval: interval, rooms: map[string]*roomTrack{},
		pending: map[string]*pendingSend{}, inflight: map[string]string{}, texts: map[string]string{}}
	for _, r := range k.cfg.Rooms {
		a.rooms[r] = &roomTrack{epochs: map[string]*epochLog{}}
	}
	return a
}

// run connects, and reconnects to the next live node after every broken
// connection, until the checker stops.
func (a *actor) run() {
	k := a.k
	defer k.wg.Done()
	bo := client.Backoff{Base: reconnectBase, Max: reconnectMax}
	for attempt := a.home; !k.stopped(); attempt++ {
		if url := k.liveURL(attempt); url != "" && a.connect(url) {
			bo.Reset()
		}
		t := time.NewTimer(bo.Next())
		select {
		case <-k.stop:
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// session is one connection of a client.
type session struct {
	a    *actor
	conn *client.Conn
	url  string
	pace *rate.Limiter
	// Guarded by MultiRoom.mu: the rooms joined on this connection, the
	// rooms whose join is due (at the time given) and those with a join in
	// flight (with the cursor it resumes from), the own messages received
	// on this connection (room, cid), and the request counter.
	joined   map[string]bool
	joinAt   map[string]time.Time
	joinSent map[string]client.Cursor
	ownSeen  map[[2]string]bool
	// early holds the acks that came before their message (room, cid):
	// which epoch such an ack belongs to is only known once the message
	// comes (it may be a new epoch the connection has not been told of
	// yet), so it is recorded then, or, if the message never comes on this
	// connection, when the connection ends.
	early map[[2]string]ackRec
	ids   int
	// recent is the last frames read, oldest first, for examples.
	recent []client.Frame
}

// recentFrames is how many frames a connection keeps for examples.
const recentFrames = 6

// remember keeps f among the connection's recent frames (joined, message,
// ack and error frames: the ones the checks are about). It keeps the frame
// as read; recentText decodes them only when an example needs them.
func (s *session) remember(f client.Frame) {
	switch f.Type {
	case protocol.TypeJoined, protocol.TypeMessage, protocol.TypeAck, protocol.TypeError:
	default:
		return
	}
	if len(s.recent) == recentFrames {
		s.recent = s.recent[1:]
	}
	s.recent = append(s.recent, f)
}

// recentText is the connection's recent frames in short form.
func (s *session) recentText() string {
	out := make([]string, 0, len(s.recent))
	for _, f := range s.recent {
		var v struct {
			Room, CID, Epoch, Code string
			Seq, Head              uint64
			Recovered              *bool
			Duplicate              bool
		}
		_ = f.Decode(&v)
		short := fmt.Sprintf("%s %s", f.Type, v.Room)
		switch f.Type {
		case protocol.TypeMessage:
			short += fmt.Sprintf(" seq %d %s", v.Seq, v.CID)
		case protocol.TypeAck:
			short += fmt.Sprintf(" seq %d %s", v.Seq, v.CID)
			if v.Duplicate {
				short += " (duplicate)"
			}
		case protocol.TypeJoined:
			short += fmt.Sprintf(" epoch %s head %d", v.Epoch, v.Head)
			if v.Recovered != nil {
				short += fmt.Sprintf(" recovered %v", *v.Recovered)
			}
		case protocol.TypeError:
			short += " " + v.Code
		}
		out = append(out, short)
	}
	return strings.Join(out, " | ")
}

// connect runs one connection until it breaks or the checker stops, and
// reports whether it got as far as the welcome.
func (a *actor) connect(url string) bool {
	k := a.k
	ctx, cancel := context.WithTimeout(context.Background(), k.cfg.connectTimeout())
	go func() { // a Stop interrupts the connect
		select {
		case <-k.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	hello := protocol.ClientFrame{Name: a.name, Protocol: protocol.Version}
	if k.cfg.Token != nil {
		hello = protocol.ClientFrame{Token: k.cfg.Token(a.name), Protocol: protocol.Version}
	}
	c, _, err := client.DialHello(ctx, url, hello, client.Options{})
	cancel()
	if err != nil {
		if code, reason, ok := client.CloseCode(err); ok && code == protocol.CloseAuthFailed {
			k.mu.Lock()
			k.led.find.example(CheckAuthRefused, fmt.Sprintf("%s at %s on %s: close 4001 %q", a.name, k.at(time.Now()), url, reason))
			k.mu.Unlock()
		}
		return false
	}
	s := &session{a: a, conn: c, url: url, pace: pacer(c.Welcome.Limits), joined: map[string]bool{},
		joinAt: map[string]time.Time{}, joinSent: map[string]client.Cursor{}, ownSeen: map[[2]string]bool{}, early: map[[2]string]ackRec{}}
	now := time.Now()
	k.mu.Lock()
	for _, r := range k.cfg.Rooms {
		s.joinAt[r] = now
	}
	for _, p := range a.pending {
		p.on = nil // send again on this connection once its room is joined
	}
	a.current = s
	k.mu.Unlock()
	dead := make(chan struct{})
	go s.read(dead)
	s.drive(dead)
	c.Abort()
	<-dead
	k.mu.Lock()
	a.current = nil
	k.mu.Unlock()
	return true
}

// pacer mirrors the server's token bucket from welcome.limits, as
// docs/protocol.md §12.10 asks; the hello already took a token.
func pacer(l protocol.Limits) *rate.Limiter {
	if l.RatePerSecond <= 0 || l.RateBurst <= 1 {
		return rate.NewLimiter(rate.Inf, 0)
	}
	return rate.NewLimiter(rate.Limit(l.RatePerSecond), l.RateBurst-1)
}

// drive sends what is due (joins, resends, new messages) until the
// connection breaks or the checker stops.
func (s *session) drive(dead <-chan struct{}) {
	k := s.a.k
	tick := driverTick
	if s.a.interval > 0 {
		tick = min(tick, s.a.interval)
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-k.stop:
		case <-dead:
		case <-ctx.Done():
			return
		}
		cancel()
		s.conn.Abort() // unblocks a write to a node that stopped reading
	}()
	for {
		for _, f := range s.due(time.Now()) {
			if s.pace.Wait(ctx) != nil || s.conn.Send(f) != nil {
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// due returns the frames to send now: joins whose time has come, messages
// to send again (on a new connection, after an error's backoff, or after
// the ack timeout), and a new message when the pace allows.
func (s *session) due(now time.Time) []protocol.ClientFrame {
	a, k := s.a, s.a.k
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []protocol.ClientFrame
	for _, room := range k.cfg.Rooms {
		if at, ok := s.joinAt[room]; ok && !at.After(now) {
			delete(s.joinAt, room)
			cur := a.rooms[room].cursor
			s.joinSent[room] = cur
			s.ids++
			out = append(out, cur.JoinFrame(fmt.Sprintf("j:%d", s.ids), room))
		}
	}
	if a.interval == 0 {
		return out
	}
	for _, cid := range sortedKeys(a.pending) {
		p := a.pending[cid]
		if !s.joined[p.room] {
			continue
		}
		switch {
		case p.on != s, !p.retryAt.IsZero() && !now.Before(p.retryAt), p.retryAt.IsZero() && now.Sub(p.sentAt) >= k.cfg.ackTimeout():
			out = append(out, s.sendFrame(p, now))
		}
	}
	if k.publishingStopped() || now.Before(a.nextPublish) {
		return out
	}
	rooms := k.cfg.Rooms
	for i := range rooms {
		room := rooms[(a.next+i)%len(rooms)]
		if !s.joined[room] || a.inflight[room] != "" {
			continue
		}
		a.next = (a.next + i + 1) % len(rooms)
		cid := fmt.Sprintf("%s-%d", a.name, a.made)
		a.made++
		p := &pendingSend{room: room, cid: cid, text: fmt.Sprintf("%s says %d in %s", a.name, a.made, room)}
		a.pending[cid] = p
		a.inflight[room] = cid
		a.texts[cid] = p.text
		a.nextPublish = now.Add(a.interval)
		out = append(out, s.sendFrame(p, now))
		break
	}
	return out
}

// sendFrame builds the send of p on this connection and notes it sent.
func (s *session) sendFrame(p *pendingSend, now time.Time) protocol.ClientFrame {
	p.on, p.sentAt, p.retryAt = s, now, time.Time{}
	s.ids++
	return protocol.ClientFrame{Type: protocol.TypeSend, ID: fmt.Sprintf("s:%d:%s", s.ids, p.cid), Room: p.room, CID: p.cid, Text: p.text}
}

// read records every frame the connection receives, and closes dead when
// the connection breaks.
func (s *session) read(dead chan<- struct{}) {
	defer close(dead)
	k := s.a.k
	defer func() {
		k.mu.Lock()
		defer k.mu.Unlock()
		s.flushEarly()
	}()
	for {
		f, err := s.conn.Read()
		if err != nil {
			return
		}
		frames := []client.Frame{f}
		if k.tamper != nil {
			frames = k.tamper(s.a.name, f)
		}
		at := time.Now()
		k.mu.Lock()
		for _, f := range frames {
			s.handle(f, at)
		}
		k.mu.Unlock()
		k.signal()
	}
}

// who names this connection in examples: the client and its node.
func (s *session) who() string { return fmt.Sprintf("%s on %s", s.a.name, s.a.k.nodeName(s.url)) }

// handle records one frame. Called under MultiRoom.mu.
func (s *session) handle(f client.Frame, at time.Time) {
	s.remember(f)
	switch f.Type {
	case protocol.TypeJoined:
		var j protocol.Joined
		if s.decode(f, &j) {
			s.onJoined(j, at)
		}
	case protocol.TypeMessage:
		var m protocol.Message
		if s.decode(f, &m) {
			s.onMessage(m, at)
		}
	case protocol.TypeAck:
		var a protocol.Ack
		if s.decode(f, &a) {
			s.onAck(a, at)
		}
	case protocol.TypeError:
		var e protocol.Error
		if s.decode(f, &e) {
			s.onError(e, at)
		}
	}
}

func (s *session) decode(f client.Frame, v any) bool {
	if err := f.Decode(v); err != nil {
		s.a.k.led.find.example(CheckProtocol, fmt.Sprintf("%s: undecodable %s frame %s: %v", s.who(), f.Type, f.Raw, err))
		return false
	}
	return true
}

// onJoined applies a joined frame, asked for or not, as docs/protocol.md
// §5.3 says: a fresh join starts the client at head; a recovered resume is
// followed by the replay; recovered:false in the same epoch is an announced
// gap; another epoch means the room started again.
func (s *session) onJoined(j protocol.Joined, at time.Time) {
	a, k := s.a, s.a.k
	led := k.led
	tr, ok := a.rooms[j.Room]
	if !ok {
		led.find.example(CheckProtocol, fmt.Sprintf("%s: joined for room %s, never asked", s.who(), j.Room))
		return
	}
	sent := tr.cursor
	if j.ID != "" {
		cur, inFlight := s.joinSent[j.Room]
		if !inFlight {
			led.find.example(CheckProtocol, fmt.Sprintf("%s: joined %s (id %s) without a join in flight", s.who(), j.Room, j.ID))
		}
		delete(s.joinSent, j.Room)
		sent = cur
	} else if !s.joined[j.Room] || j.Recovered == nil || *j.Recovered {
		led.find.example(CheckProtocol, fmt.Sprintf("%s: unasked joined %+v, which docs/protocol.md §5.3 allows only with recovered:false for a room joined", s.who(), j))
	}
	led.noteEpoch(j.Room, j.Epoch, at)
	switch sent.Outcome(j) {
	case client.Fresh:
		if sent.Known() {
			led.find.example(CheckProtocol, fmt.Sprintf("%s: resume of %s from seq %d answered without recovered: %+v", s.who(), j.Room, sent.Seq, j))
		}
		if !tr.cursor.Known() {
			tr.adopt(j.Epoch, j.Head)
		}
	case client.Recovered:
		if j.Epoch != sent.Epoch {
			led.find.example(CheckProtocol, fmt.Sprintf("%s: resume of %s from epoch %s answered recovered in epoch %s", s.who(), j.Room, sent.Epoch, j.Epoch))
		}
		if j.Head < tr.cursor.Seq {
			led.find.example(CheckRollback, fmt.Sprintf("%s: resumed %s from seq %d (epoch %s), answered recovered with head %d: seqs %d..%d it had received are gone from the room",
				s.who(), j.Room, tr.cursor.Seq, j.Epoch, j.Head, j.Head+1, tr.cursor.Seq))
			tr.cursor.Seq = j.Head
		}
	case client.Gap:
		led.gaps++
		e := tr.epochs[tr.cursor.Epoch]
		e.excused = append(e.excused, [2]uint64{tr.cursor.Seq, j.Head})
		tr.cursor.Seq = max(tr.cursor.Seq, j.Head)
	case client.NewEpoch:
		if e := tr.epochs[tr.cursor.Epoch]; e != nil {
			e.ended, e.end = true, tr.cursor.Seq
		}
		led.noteRestart(j.Room, tr.cursor.Epoch, j.Epoch, at, s.who())
		tr.adopt(j.Epoch, j.Head)
	}
	s.joined[j.Room] = true
	tr.events = append(tr.events, event{at: at, epoch: tr.cursor.Epoch, last: tr.cursor.Seq, url: s.url})
}

// adopt starts the client in an epoch at head: it is owed every later seq.
func (tr *roomTrack) adopt(epoch string, head uint64) {
	tr.cursor = client.Cursor{Epoch: epoch, Seq: head}
	if tr.epochs[epoch] == nil {
		tr.epochs[epoch] = &epochLog{from: head, got: map[uint64]content{}}
	}
}

// onMessage records a delivery and checks its order against the cursor.
func (s *session) onMessage(m protocol.Message, at time.Time) {
	a, k := s.a, s.a.k
	led := k.led
	tr, ok := a.rooms[m.Room]
	if !ok || !s.joined[m.Room] {
		led.find.example(CheckProtocol, fmt.Sprintf("%s: message of room %s, not joined on this connection: seq %d", s.who(), m.Room, m.Seq))
		return
	}
	e := tr.epochs[tr.cursor.Epoch]
	c := content{From: m.From, CID: m.CID, Text: m.Text}
	key := slotKey{room: m.Room, epoch: tr.cursor.Epoch, seq: m.Seq}
	led.noteSlot(key, c, "delivered to "+s.who()+" as")
	led.noteDelivered(key, c, s.who())
	last := tr.cursor.Seq
	if prev, seen := e.got[m.Seq]; seen {
		if prev == c {
			led.find.example(CheckDuplicated, fmt.Sprintf("%s: %s delivered again (%s), cursor at %d", s.who(), key, c, last))
		} else {
			led.find.example(CheckConflict, fmt.Sprintf("%s: %s delivered as %s, then as %s", s.who(), key, prev, c))
		}
	} else {
		if m.Seq != last+1 {
			led.find.example(CheckOutOfOrder, fmt.Sprintf("%s: %s (%s) after seq %d", s.who(), key, c, last))
		}
		e.got[m.Seq] = c
	}
	tr.cursor.Seq = max(last, m.Seq)
	if m.From == a.name {
		id := [2]string{m.Room, m.CID}
		s.ownSeen[id] = true
		if r, ok := s.early[id]; ok {
			// The ack that came first belongs to the epoch the message
			// came in, and must name its seq.
			delete(s.early, id)
			if r.key.seq != m.Seq {
				led.find.example(CheckConflict, fmt.Sprintf("%s: %s acked at seq %d, then delivered at %s", s.who(), m.CID, r.key.seq, key))
			}
			r.key.epoch = tr.cursor.Epoch
			led.noteAck(r, k.nodeName(r.url))
		}
	}
	tr.events = append(tr.events, event{at: at, epoch: tr.cursor.Epoch, last: tr.cursor.Seq, url: s.url})
}

// onAck records an ack: the message it names is stored at seq in the
// epoch the sender's connection is in, and (unless it is a duplicate of an
// earlier send) the connection must already have received it.
func (s *session) onAck(ack protocol.Ack, at time.Time) {
	a, k := s.a, s.a.k
	led := k.led
	p := a.pending[ack.CID]
	tr, ok := a.rooms[ack.Room]
	switch {
	case !ok:
		led.find.example(CheckProtocol, fmt.Sprintf("%s: ack for room %s, never joined: %+v", s.who(), ack.Room, ack))
		return
	case a.texts[ack.CID] == "":
		led.find.example(CheckProtocol, fmt.Sprintf("%s: ack for cid %s, never sent", s.who(), ack.CID))
		return
	}
	text := a.texts[ack.CID]
	key := slotKey{room: ack.Room, epoch: tr.cursor.Epoch, seq: ack.Seq}
	c := content{From: a.name, CID: ack.CID, Text: text}
	rec := ackRec{at: at, actor: a.name, url: s.url, key: key, c: c, duplicate: ack.Duplicate}
	id := [2]string{ack.Room, ack.CID}
	if e := tr.epochs[tr.cursor.Epoch]; !ack.Duplicate && !s.ownSeen[id] && (e == nil || e.owes(ack.Seq)) {
		led.find.example(CheckAckBeforeMessage, fmt.Sprintf("%s: ack for %s at seq %d of room %s before the message (cursor at seq %d of epoch %s); its last frames: %s",
			s.who(), ack.CID, ack.Seq, ack.Room, tr.cursor.Seq, tr.cursor.Epoch, s.recentText()))
		led.noteEarlyAck(rec)
		s.early[id] = rec
	} else {
		led.noteAck(rec, k.nodeName(s.url))
	}
	if p != nil {
		delete(a.pending, ack.CID)
		if a.inflight[p.room] == ack.CID {
			delete(a.inflight, p.room)
		}
	}
}

// onError handles a refused join or send as docs/protocol.md §12.8 says:
// unavailable (or rate_limited, storage_full, storage_failed) is retried
// after a jittered backoff, with the same cid for a send; not_joined means the join failed, so the room is
// joined again first.
func (s *session) onError(e protocol.Error, at time.Time) {
	a, k := s.a, s.a.k
	retry := at.Add(time.Duration(rand.Int64N(int64(retryBackoff))))
	transient := isRetried(e.Code)
	if transient {
		k.led.refusals[e.Code]++
	}
	switch {
	case strings.HasPrefix(e.ID, "j:") && transient:
		delete(s.joinSent, e.Room)
		s.joinAt[e.Room] = retry
	case strings.HasPrefix(e.ID, "s:"):
		parts := strings.SplitN(e.ID, ":", 3)
		p := a.pending[parts[len(parts)-1]]
		switch {
		case p == nil:
			// An answer to an earlier send of a message acknowledged since.
		case transient:
			p.retryAt = retry
		case e.Code == protocol.CodeNotJoined:
			s.joined[p.room] = false
			if _, inFlight := s.joinSent[p.room]; !inFlight {
				s.joinAt[p.room] = retry
			}
			p.on = nil
		default:
			k.led.find.example(CheckProtocol, fmt.Sprintf("%s: send of %s refused: %s (%s)", s.who(), p.cid, e.Code, e.Message))
		}
	default:
		k.led.find.example(CheckProtocol, fmt.Sprintf("%s: error %s (%s) for request %q", s.who(), e.Code, e.Message, e.ID))
	}
}

// flushEarly records the acks whose message never came on this
// connection, in the epoch the connection was in when they came. Called
// under MultiRoom.mu.
func (s *session) flushEarly() {
	for _, id := range slices.SortedFunc(maps.Keys(s.early), func(a, b [2]string) int { return strings.Compare(a[0]+a[1], b[0]+b[1]) }) {
		r := s.early[id]
		delete(s.early, id)
		s.a.k.led.noteAck(r, s.a.k.nodeName(r.url))
	}
}

// nodeName names the node at url for examples.
func (k *MultiRoom) nodeName(url string) string {
	if k.cfg.NodeName != nil {
		if n := k.cfg.NodeName(url); n != "" {
			return n
		}
	}
	return url
}
