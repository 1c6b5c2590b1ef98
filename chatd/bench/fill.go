package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// FillConfig configures Fill.
type FillConfig struct {
	Options
	// Rooms named RoomName(RoomPrefix, 0 … Rooms-1) get MessagesPerRoom
	// messages each.
	Rooms           int
	MessagesPerRoom int
	RoomPrefix      string
	// Connections write in parallel; each joins Batch rooms at a time
	// (at most the server's --max-rooms), fills them with at most Window
	// sends in flight (written, not yet acked), leaves them and takes the
	// next batch.
	Connections int
	Batch       int
	Window      int
	// Settle, when positive, is how long to wait after the fill for the
	// rooms to leave the servers' memory (they do --room-idle-ttl after
	// the last member left); then Hold, then the server's idle memory is
	// read. Zero: the memory is read at once after Hold.
	Settle time.Duration
	Hold   time.Duration
}

// FillReport is what Fill wrote.
type FillReport struct {
	RoomPrefix      string `json:"room_prefix"`
	Rooms           int    `json:"rooms"`
	MessagesPerRoom int    `json:"messages_per_room"`
	// RoomsFilled got every message, acked with the sequence numbers that
	// follow the room's head at the join, each once.
	RoomsFilled int `json:"rooms_filled"`
	// RoomsShort got fewer acks than messages sent, or acks with gaps or
	// repeats in their sequence numbers.
	RoomsShort int `json:"rooms_short"`
	// RoomsFailed could not be joined, or their connection was lost, or
	// they were never reached (the run was interrupted).
	RoomsFailed int `json:"rooms_failed"`
	// RoomsNotEmpty already held messages when joined: the fill went on top
	// (their head is then above MessagesPerRoom).
	RoomsNotEmpty int     `json:"rooms_not_empty"`
	Messages      uint64  `json:"messages"`
	Seconds       float64 `json:"seconds"`
	// MessagesPerSec is acked messages over the fill's duration.
	MessagesPerSec float64 `json:"messages_per_sec"`
	// AckLatency is send→ack of every message, under the fill's load.
	AckLatency LatencyReport `json:"ack_latency"`
	// StoreSync is the first server's group commits during the fill.
	StoreSync *StoreSyncReport `json:"store_sync,omitempty"`
	// Samples of what went wrong, at most a few.
	Problems []string `json:"problems,omitempty"`
	// Idle is the server's memory after the fill, once idle.
	Idle *IdleReport `json:"idle,omitempty"`
}

// RoomName is the name of the i-th room of a fill (and of the history and
// ready scenarios reading it back).
func RoomName(prefix string, i int) string { return prefix + "-" + strconv.Itoa(i) }

// Fill writes MessagesPerRoom messages into each of Rooms rooms, as fast as
// the server acks them over Connections pipelining connections, and checks
// every ack: each room's acks must carry the sequence numbers after its
// head, each once, and the writer must read each of its messages back once
// and in order. It reports the fill rate and, after Settle and Hold, the
// server's idle memory. It prepares the store that the history and ready
// scenarios read, through the server's real write path.
func Fill(ctx context.Context, cfg FillConfig) (*Report, error) {
	if cfg.Rooms < 1 || cfg.MessagesPerRoom < 1 {
		return nil, errors.New("fill needs --rooms ≥ 1 and --messages-per-room ≥ 1")
	}
	if err := checkPrefix(cfg.RoomPrefix); err != nil {
		return nil, err
	}
	if cfg.Connections <= 0 {
		cfg.Connections = 32
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 50
	}
	if cfg.Window <= 0 {
		cfg.Window = 64
	}
	run, err := newRun("fill", cfg.Options)
	if err != nil {
		return nil, err
	}
	conns, capNote := capConnections(min(cfg.Connections, (cfg.Rooms+cfg.Batch-1)/cfg.Batch), run.fdLimit)
	if capNote != "" {
		run.notes = append(run.notes, capNote)
	}
	rep := run.newReport(map[string]any{
		"rooms": cfg.Rooms, "messages_per_room": cfg.MessagesPerRoom, "room_prefix": cfg.RoomPrefix,
		"connections": cfg.Connections, "batch": cfg.Batch, "window": cfg.Window, "text_size": run.opts.TextSize,
		"settle": cfg.Settle.String(), "hold": cfg.Hold.String(),
	})
	f := &filler{cfg: cfg, run: run}
	before := run.mark()
	run.setPhase("fill")
	stop := run.progress(ctx, f.status)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.worker(ctx, i)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	stop()
	after := run.mark()

	fr := f.report(elapsed)
	rep.Fill = fr
	rep.Connections = ConnReport{Requested: conns, Opened: int(f.opened.Load()), Failed: conns - int(f.opened.Load()),
		FailureSamples: f.dialErrs, ClosedByServer: f.closeCodes}
	rep.Server = run.serverReport(before, before, after)
	fr.StoreSync = storeSyncReport(before, after)
	rep.Integrity = f.integrity()
	if fr.RoomsShort > 0 || fr.RoomsFailed > 0 {
		rep.Integrity.Clean = false
	}
	if ctx.Err() == nil && (cfg.Settle > 0 || cfg.Hold > 0) {
		idle, err := run.idleMemory(ctx, cfg.Settle, cfg.Hold)
		fr.Idle = idle
		if err != nil {
			run.note("idle memory: %v", err)
		}
	}
	return run.finish(ctx, rep, nil), nil
}

// checkPrefix refuses a room prefix the server would refuse as a room name.
func checkPrefix(p string) error {
	if p == "" {
		return errors.New("--room-prefix must not be empty")
	}
	if len(p) > 50 {
		return errors.New("--room-prefix must be at most 50 bytes (room names are at most 64)")
	}
	for _, c := range []byte(p) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':' || c == '/') {
			return fmt.Errorf("--room-prefix %q: only letters, digits and - _ . : / are allowed", p)
		}
	}
	return nil
}

// filler is one Fill run: batches of rooms handed to connections.
type filler struct {
	cfg FillConfig
	run *runState

	nextRoom atomic.Int64 // first room of the next batch
	opened   atomic.Int64
	acked    atomic.Uint64
	roomsOut atomic.Int64 // rooms whose batch completed

	mu         sync.Mutex
	rooms      []*fillRoom // every room taken, with its result
	conns      []*fillConn
	dialErrs   []string
	closeCodes map[string]int
	problems   []string
}

func (f *filler) status() string {
	return fmt.Sprintf("rooms done %d/%d, acked %d", f.roomsOut.Load(), f.cfg.Rooms, f.acked.Load())
}

func (f *filler) problem(format string, args ...any) {
	f.mu.Lock()
	if len(f.problems) < 10 {
		f.problems = append(f.problems, fmt.Sprintf(format, args...))
	}
	f.mu.Unlock()
}

// worker dials one connection and fills batches with it until none are
// left, the run is cancelled or the connection fails.
func (f *filler) worker(ctx context.Context, i int) {
	dc := f.run.dialConfig(i)
	dctx, cancel := context.WithTimeout(ctx, dc.timeout)
	ws, err := dialHello(dctx, f.run.opts.URLs[i%len(f.run.opts.URLs)], fmt.Sprintf("b%s-fill-%d", f.run.id, i), dc)
	cancel()
	if err != nil {
		f.mu.Lock()
		if len(f.dialErrs) < 5 {
			f.dialErrs = append(f.dialErrs, err.Error())
		}
		f.mu.Unlock()
		return
	}
	f.opened.Add(1)
	c := newFillConn(ws, f, uint64(i))
	f.mu.Lock()
	f.conns = append(f.conns, c)
	f.mu.Unlock()
	defer c.close()
	for ctx.Err() == nil {
		lo := int(f.nextRoom.Add(int64(f.cfg.Batch))) - f.cfg.Batch
		if lo >= f.cfg.Rooms {
			return
		}
		hi := min(lo+f.cfg.Batch, f.cfg.Rooms)
		batch := make([]*fillRoom, 0, hi-lo)
		for r := lo; r < hi; r++ {
			batch = append(batch, &fillRoom{name: RoomName(f.cfg.RoomPrefix, r)})
		}
		err := c.fillBatch(ctx, batch)
		if err != nil {
			// The reader must be gone before the rooms' state is read.
			c.close()
			<-c.dead
		}
		f.mu.Lock()
		f.rooms = append(f.rooms, batch...)
		f.mu.Unlock()
		f.roomsOut.Add(int64(len(batch)))
		if err != nil {
			f.problem("connection %d: %v", i, err)
			return
		}
	}
}

// report summarises every room after the workers are done.
func (f *filler) report(elapsed time.Duration) *FillReport {
	r := &FillReport{RoomPrefix: f.cfg.RoomPrefix, Rooms: f.cfg.Rooms, MessagesPerRoom: f.cfg.MessagesPerRoom, Seconds: elapsed.Seconds()}
	want := uint64(f.cfg.MessagesPerRoom)
	for _, rm := range f.rooms {
		switch {
		case rm.failed != "":
			r.RoomsFailed++
			f.problem("room %s: %s", rm.name, rm.failed)
			continue
		case rm.acked != want || rm.acks.missing(rm.head+want) > 0 || rm.acks.dups > 0 || rm.acks.last != rm.head+want:
			r.RoomsShort++
			f.problem("room %s: %d of %d messages acked, seqs %d–%d expected, %d missing, %d acked twice",
				rm.name, rm.acked, want, rm.head+1, rm.head+want, rm.acks.missing(rm.head+want), rm.acks.dups)
		default:
			r.RoomsFilled++
		}
		if rm.head > 0 {
			r.RoomsNotEmpty++
		}
		r.Messages += rm.acked
	}
	// Rooms no connection reached (every connection failed, or the run was
	// interrupted).
	r.RoomsFailed += f.cfg.Rooms - len(f.rooms)
	if elapsed > 0 {
		r.MessagesPerSec = float64(r.Messages) / elapsed.Seconds()
	}
	r.AckLatency = latencyReport(f.run.ackLat.merged(1))
	r.Problems = f.problems
	if r.RoomsNotEmpty > 0 {
		f.run.note("%d rooms already held messages: the fill added to them", r.RoomsNotEmpty)
	}
	f.closeCodes = map[string]int{}
	for _, c := range f.conns {
		switch code := c.closeCode.Load(); {
		case code == 0:
		case code < 0:
			f.closeCodes["network"]++
		default:
			f.closeCodes[strconv.Itoa(int(code))]++
		}
	}
	return r
}

// integrity accounts for every send, ack and read-back message.
func (f *filler) integrity() *Integrity {
	in := &Integrity{Errors: map[string]uint64{}}
	in.Published = f.run.published.Load()
	for _, rm := range f.rooms {
		in.Stored += rm.acked
		in.Refused += rm.refused
		in.DuplicateAcks += rm.dupAcks
		in.Expected += rm.acked
		in.Delivered += rm.received
		in.Lost += rm.echo.missing(rm.acks.last)
		in.Duplicated += rm.echo.dups
		in.OutOfOrder += rm.echo.ooo
	}
	for _, c := range f.conns {
		in.UnmatchedAcks += c.unmatched.Load()
		in.Foreign += c.foreign
	}
	if answered := in.Stored + in.DuplicateAcks + in.Refused; in.Published > answered {
		in.Unanswered = in.Published - answered
	}
	in.BadFrames = f.run.badFrames.Load()
	f.run.errMu.Lock()
	for k, v := range f.run.errors {
		in.Errors[k] = v
	}
	f.run.errMu.Unlock()
	in.Clean = in.Lost == 0 && in.Duplicated == 0 && in.OutOfOrder == 0 && in.Unanswered == 0 &&
		in.DuplicateAcks == 0 && in.UnmatchedAcks == 0 && in.BadFrames == 0 && in.Foreign == 0
	return in
}

// fillText appends size pseudo-random base32 letters: texts that do not
// compress much more than chat text does, so the store's size on disk is
// not flattered.
func fillText(b []byte, rng *rand.Rand, size int) []byte {
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	for i := 0; i < size; {
		v := rng.Uint64()
		for j := 0; j < 12 && i < size; j++ {
			b = append(b, alphabet[v&31])
			v >>= 5
			i++
		}
	}
	return b
}
