// Package bench is chatbench's engine: it opens many WebSocket connections
// to chatd, publishes timestamped messages at controlled rates, checks that
// every subscriber receives every message once and in order, and measures
// publish→receive latency (HDR histograms) and the server's memory and CPU.
//
// Each scenario (Idle, Fanout, Rooms, CrossNode) returns a Report, which
// prints as a table or as JSON. Reports never hide a lost, duplicated or
// reordered message: Integrity counts them by (room, seq) and, as a cross
// check, by the cid each publisher chose.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options are shared by every scenario.
type Options struct {
	// URLs are the chatd WebSocket endpoints (ws://host:port/ws). Idle,
	// Rooms and Fanout's subscribers spread their connections over all of
	// them round robin; Fanout's publisher and the server figures use the
	// first; CrossNode places publishers and subscribers on different ones.
	URLs []string
	// AllowRemote permits non-loopback targets.
	AllowRemote bool
	// ServerPID, when set, is the server process to read /proc/<pid> from.
	ServerPID int
	// MetricsURLs are the nodes' Prometheus endpoints, one per URL in the
	// same order (chatd serves /metrics on its --admin-listen address, not
	// on the client port); the first one gives the server figures. Empty:
	// no metrics (scenarios that count the rooms in memory need them).
	MetricsURLs []string
	// Stats selects the server figures' source: auto, proc, metrics, none.
	Stats string
	// DialConcurrency is the number of connections opened in parallel.
	DialConcurrency int
	// DialTimeout bounds one connection's upgrade, hello and join.
	DialTimeout time.Duration
	// ReadBuffer is gorilla's read buffer per connection.
	ReadBuffer int
	// TextSize is the length of every message text in bytes (≥ 32).
	TextSize int
	// Tick is the publishers' scheduling period: each tick sends the
	// messages due since the last one, back to back.
	Tick time.Duration
	// Warmup is a period at the start whose messages are delivered and
	// checked but not included in latency and rate figures.
	Warmup time.Duration
	// Drain bounds the wait for the last messages after publishing stops.
	Drain time.Duration
	// Progress receives a status line every ProgressEvery; nil for none.
	Progress      io.Writer
	ProgressEvery time.Duration
	// TokenSecretFile, when set, holds chatd's HS256 secret (the file
	// chatd's --jwt-secret-file names): every connection then says hello
	// with a token minted for its user instead of an anonymous name, so
	// that the server can run with its production defaults (no
	// --allow-anonymous).
	TokenSecretFile string
	// SourceAddrs, when positive, spreads the connections round robin over
	// the source addresses 127.0.0.2 … 127.0.0.(SourceAddrs+1), so that
	// chatd's per-IP connection cap (1000 by default) holds with more
	// connections than that. Loopback targets only. 0: the kernel picks.
	SourceAddrs int
}

// withDefaults fills zero fields.
func (o Options) withDefaults() Options {
	if o.Stats == "" {
		o.Stats = "auto"
	}
	if o.DialConcurrency <= 0 {
		o.DialConcurrency = 64
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 15 * time.Second
	}
	if o.ReadBuffer <= 0 {
		o.ReadBuffer = 16 << 10
	}
	if o.TextSize < minTextSize {
		o.TextSize = minTextSize
	}
	if o.Tick <= 0 {
		o.Tick = 5 * time.Millisecond
	}
	if o.Drain <= 0 {
		o.Drain = 10 * time.Second
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = time.Second
	}
	return o
}

// minTextSize fits the send stamp ("t=<19 digits>;s=<step>;").
const minTextSize = 32

// room is one chat room of a run.
type room struct {
	name   string
	maxSeq atomic.Uint64 // highest seq acked
	stored atomic.Uint64 // non-duplicate acks: messages every member must get
	pubs   []*conn
	subs   []*conn // tracking connections
}

func (r *room) noteAck(seq uint64) {
	r.stored.Add(1)
	for {
		cur := r.maxSeq.Load()
		if seq <= cur || r.maxSeq.CompareAndSwap(cur, seq) {
			return
		}
	}
}

// runState is one scenario run.
type runState struct {
	scenario string
	opts     Options
	id       string
	started  time.Time
	lat      *latencySet
	// ackLat is send→ack latency, by step like lat.
	ackLat  *latencySet
	stats   *serverStats
	fdLimit uint64
	notes   []string
	// tokens mints the connections' tokens; nil: anonymous hellos.
	tokens *tokenMinter

	rooms   []*room
	conns   []*conn
	readers sync.WaitGroup

	published  atomic.Uint64
	acked      atomic.Uint64 // acks and send refusals: answered sends
	stored     atomic.Uint64 // acks not flagged duplicate: messages stored
	refused    atomic.Uint64 // sends refused with an error frame
	delivered  atomic.Uint64
	presence   atomic.Uint64 // presence frames received (native protocol)
	slowParses atomic.Uint64
	badFrames  atomic.Uint64

	errMu  sync.Mutex
	errors map[string]uint64

	phase atomic.Pointer[string]

	connectFailures []string
	connectFailed   int
	connectSeconds  float64
}

// newRun checks the targets, raises the file limit and picks the server
// stats source.
func newRun(scenario string, o Options) (*runState, error) {
	o = o.withDefaults()
	if err := CheckTargets(o.URLs, o.AllowRemote); err != nil {
		return nil, err
	}
	if err := CheckSourceAddrs(o.SourceAddrs, o.AllowRemote, o.URLs); err != nil {
		return nil, err
	}
	var tokens *tokenMinter
	if o.TokenSecretFile != "" {
		var err error
		if tokens, err = loadTokenMinter(o.TokenSecretFile); err != nil {
			return nil, err
		}
	}
	switch o.Stats {
	case "auto", "proc", "metrics", "none":
	default:
		return nil, fmt.Errorf("--server-stats %q: want auto, proc, metrics or none", o.Stats)
	}
	r := &runState{scenario: scenario, opts: o, id: runID(), started: time.Now(), lat: newLatencySet(), ackLat: newLatencySet(), errors: map[string]uint64{}, tokens: tokens}
	limit, err := RaiseFileLimit()
	if err != nil {
		r.note("cannot raise the open-file limit: %v", err)
	}
	r.fdLimit = limit
	stats, notes := newServerStats(o.Stats, o.ServerPID, firstOf(o.MetricsURLs), o.URLs[0])
	r.stats = stats
	r.notes = append(r.notes, notes...)
	r.setPhase("setup")
	return r, nil
}

func runID() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// dialConfig is the dial settings of the run's i-th connection: its
// source address (round robin over SourceAddrs) and its credentials.
func (r *runState) dialConfig(i int) dialConfig {
	return dialConfig{readBuffer: r.opts.ReadBuffer, timeout: r.opts.DialTimeout, local: sourceAddr(i, r.opts.SourceAddrs), tokens: r.tokens}
}

// perSource is the share of n connections one source address carries:
// the figure the local port range limits (ports are per source address).
func (r *runState) perSource(n int) int {
	return n / max(1, r.opts.SourceAddrs)
}

func (r *runState) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

func (r *runState) setPhase(p string) { r.phase.Store(&p) }

func (r *runState) countError(code string) {
	r.errMu.Lock()
	r.errors[code]++
	r.errMu.Unlock()
}

// errorsCopy returns the error frames counted so far, by code.
func (r *runState) errorsCopy() map[string]uint64 {
	r.errMu.Lock()
	defer r.errMu.Unlock()
	out := make(map[string]uint64, len(r.errors))
	for k, v := range r.errors {
		out[k] = v
	}
	return out
}

func (r *runState) newRoom(name string) *room {
	rm := &room{name: "bench-" + r.id + "-" + name}
	r.rooms = append(r.rooms, rm)
	return rm
}

// connSpec describes one connection to open.
type connSpec struct {
	url     string
	room    *room
	track   bool
	publish bool
	// user, when set, is the connection's user (default: one per
	// connection); resume, when set, makes its join a resume.
	user   string
	resume *resumePoint
}

// connect opens the connections of specs in parallel, joins their rooms and
// starts their readers. Failures are counted, not fatal: the report says
// how many connections were opened. The returned slice has nil for the
// connections that failed.
func (r *runState) connect(ctx context.Context, specs []connSpec) []*conn {
	start := time.Now()
	out := make([]*conn, len(specs))
	var (
		next   atomic.Int64
		opened atomic.Int64
		mu     sync.Mutex
		wg     sync.WaitGroup
	)
	base := len(r.conns)
	stopProgress := r.progress(ctx, func() string {
		return fmt.Sprintf("connected %d/%d", opened.Load(), len(specs))
	})
	for w := 0; w < min(r.opts.DialConcurrency, len(specs)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(specs) || ctx.Err() != nil {
					return
				}
				s := specs[i]
				user := s.user
				if user == "" {
					user = fmt.Sprintf("b%s-%d", r.id, base+i)
				}
				c, _, err := dialConn(ctx, s.url, user, s.room, s.resume, r.dialConfig(base+i))
				if err != nil {
					mu.Lock()
					r.connectFailed++
					if len(r.connectFailures) < 5 {
						r.connectFailures = append(r.connectFailures, err.Error())
					}
					mu.Unlock()
					continue
				}
				c.id, c.track, c.run = base+i, s.track, r
				c.latShard = r.lat.shard(base + i)
				c.ackShard = r.ackLat.shard(base + i)
				out[i] = c
				opened.Add(1)
				// Read (and answer pings) from now on: a connection
				// left unread until every other one is open would be
				// dropped by the server as dead when connecting takes
				// longer than its ping timeout (seen at 15,000
				// connections on a loaded machine).
				c.startReader(&r.readers)
			}
		}()
	}
	wg.Wait()
	stopProgress()
	r.connectSeconds += time.Since(start).Seconds()
	// Slots and membership are assigned in spec order, so they do not
	// depend on which dial finished first.
	for i, c := range out {
		if c == nil {
			continue
		}
		if specs[i].publish {
			c.slot = len(c.room.pubs)
			c.room.pubs = append(c.room.pubs, c)
		}
		if c.track {
			c.room.subs = append(c.room.subs, c)
		}
		r.conns = append(r.conns, c)
	}
	return out
}

// teardown closes every connection and waits for the readers, after which
// their state may be read.
func (r *runState) teardown() {
	var wg sync.WaitGroup
	ch := make(chan *conn)
	for w := 0; w < min(64, len(r.conns)+1); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range ch {
				c.close()
			}
		}()
	}
	for _, c := range r.conns {
		ch <- c
	}
	close(ch)
	wg.Wait()
	r.readers.Wait()
}

// progress prints a status line every ProgressEvery until the returned
// function is called (which waits for the printer to stop).
func (r *runState) progress(ctx context.Context, status func() string) (stop func()) {
	if r.opts.Progress == nil {
		return func() {}
	}
	quit := make(chan struct{})
	done := make(chan struct{})
	tty := isTerminal(r.opts.Progress)
	go func() {
		defer close(done)
		t := time.NewTicker(r.opts.ProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-quit:
				if tty {
					fmt.Fprint(r.opts.Progress, "\r\033[K")
				}
				return
			case <-ctx.Done():
				return
			case <-t.C:
				line := fmt.Sprintf("[%s %s %5.1fs] %s%s", r.scenario, *r.phase.Load(), time.Since(r.started).Seconds(), status(), r.serverStatus())
				if tty {
					fmt.Fprintf(r.opts.Progress, "\r\033[K%s", line)
				} else {
					fmt.Fprintln(r.opts.Progress, line)
				}
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(quit)
			<-done
		})
	}
}

func (r *runState) serverStatus() string {
	if r.stats.source == "none" {
		return ""
	}
	s, err := r.stats.sample()
	if err != nil {
		return " | server: " + err.Error()
	}
	return fmt.Sprintf(" | server rss %s", formatBytes(float64(s.RSSBytes)))
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// closeCodes counts the connections the server closed, by code ("network"
// for a dropped socket).
func (r *runState) closeCodes() map[string]int {
	out := map[string]int{}
	for _, c := range r.conns {
		switch code := c.closeCode.Load(); {
		case code == 0:
		case code < 0:
			out["network"]++
		default:
			out[fmt.Sprint(code)]++
		}
	}
	return out
}

// openConns counts the connections not closed by the server.
func (r *runState) openConns() int {
	n := 0
	for _, c := range r.conns {
		if c.closeCode.Load() == 0 {
			n++
		}
	}
	return n
}

// drain waits until every answer to a send has arrived and every open
// tracking connection has received every stored message of its room, or
// until Drain passes. It reports whether everything arrived.
func (r *runState) drain(ctx context.Context) bool {
	r.setPhase("drain")
	deadline := time.Now().Add(r.opts.Drain)
	for {
		if r.drained() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *runState) drained() bool {
	if r.acked.Load() < r.published.Load() {
		return false
	}
	for _, rm := range r.rooms {
		want := rm.stored.Load()
		for _, c := range rm.subs {
			if c.closeCode.Load() == 0 && c.received.Load() < want {
				return false
			}
		}
	}
	return true
}

// integrity counts every message after teardown (the readers have exited).
func (r *runState) integrity() *Integrity {
	in := &Integrity{Errors: map[string]uint64{}}
	in.Published = r.published.Load()
	for _, rm := range r.rooms {
		final := rm.maxSeq.Load()
		stored := rm.stored.Load()
		in.Stored += stored
		for _, p := range rm.pubs {
			if p.acked.Load() > 0 {
				in.Publishers++
			}
			in.Refused += p.errored.Load()
			in.DuplicateAcks += p.ackDups.Load()
			in.UnmatchedAcks += p.unmatched.Load()
		}
		for _, c := range rm.subs {
			in.Expected += stored
			in.Delivered += c.received.Load()
			in.Lost += c.seqs.missing(final)
			in.Duplicated += c.seqs.dups
			in.OutOfOrder += c.seqs.ooo
			in.CIDOutOfOrder += c.cidOOO
			in.Foreign += c.foreign
			for slot, p := range rm.pubs {
				want := p.acked.Load()
				var got uint64
				if slot < len(c.cidCount) {
					got = c.cidCount[slot]
				}
				if got < want {
					in.CIDMissing += want - got
				} else {
					in.CIDExtra += got - want
				}
			}
		}
	}
	answered := in.Stored + in.DuplicateAcks + in.Refused
	if in.Published > answered {
		in.Unanswered = in.Published - answered
	}
	in.BadFrames = r.badFrames.Load()
	in.SlowParses = r.slowParses.Load()
	r.errMu.Lock()
	for k, v := range r.errors {
		in.Errors[k] = v
	}
	r.errMu.Unlock()
	in.Clean = in.Lost == 0 && in.Duplicated == 0 && in.OutOfOrder == 0 && in.CIDMissing == 0 &&
		in.CIDExtra == 0 && in.CIDOutOfOrder == 0 && in.Unanswered == 0 && in.DuplicateAcks == 0 && in.UnmatchedAcks == 0 && in.BadFrames == 0
	return in
}

// connReport summarises the connections.
func (r *runState) connReport(requested int) ConnReport {
	return ConnReport{
		Requested:      requested,
		Opened:         len(r.conns),
		Failed:         r.connectFailed,
		FailureSamples: r.connectFailures,
		ConnectSeconds: r.connectSeconds,
		ClosedByServer: r.closeCodes(),
	}
}

// window measures rates and CPU between two instants.
type window struct {
	at         time.Time
	published  uint64
	stored     uint64
	delivered  uint64
	server     ServerSample
	serverErr  error
	selfCPUSec float64
	machineSec float64
	machineErr error
}

func (r *runState) mark() window {
	w := window{at: time.Now(), published: r.published.Load(), stored: r.stored.Load(), delivered: r.delivered.Load(), selfCPUSec: selfCPUSeconds()}
	w.machineSec, w.machineErr = machineCPUSeconds()
	if r.stats.source != "none" {
		w.server, w.serverErr = r.stats.sample()
	}
	return w
}

// step fills the rate and CPU figures of s from the window a→b.
func (r *runState) fillStep(s *StepReport, a, b window) {
	dt := b.at.Sub(a.at).Seconds()
	if dt <= 0 {
		return
	}
	s.Seconds = dt
	s.PublishPerSec = float64(b.published-a.published) / dt
	s.DeliveriesPerSec = float64(b.delivered-a.delivered) / dt
	s.AckedPerSec = float64(b.stored-a.stored) / dt
	s.ClientCPUPercent = 100 * (b.selfCPUSec - a.selfCPUSec) / dt
	if r.stats.source != "none" && a.serverErr == nil && b.serverErr == nil {
		cpu := 100 * (b.server.CPUSeconds - a.server.CPUSeconds) / dt
		s.ServerCPUPercent = &cpu
		s.StoreSync = storeSyncReport(a, b)
	}
	if a.machineErr == nil && b.machineErr == nil {
		m := 100 * (b.machineSec - a.machineSec) / dt
		s.MachineCPUPercent = &m
		if s.ServerCPUPercent != nil {
			other := max(m-*s.ServerCPUPercent-s.ClientCPUPercent, 0)
			s.OtherCPUPercent = &other
		}
	}
}

// storeSyncReport is the first node's group commits between two marks,
// nil when it made none (no --data-dir, or no /metrics).
func storeSyncReport(a, b window) *StoreSyncReport {
	if a.serverErr != nil || b.serverErr != nil || b.server.StoreSyncs <= a.server.StoreSyncs {
		return nil
	}
	dt := b.at.Sub(a.at).Seconds()
	syncs := float64(b.server.StoreSyncs - a.server.StoreSyncs)
	return &StoreSyncReport{
		SyncsPerSec:   syncs / dt,
		MeanSyncMS:    1000 * (b.server.StoreSyncSeconds - a.server.StoreSyncSeconds) / syncs,
		WritesPerSync: float64(b.server.StoreSyncedWrites-a.server.StoreSyncedWrites) / syncs,
		BusyPercent:   100 * (b.server.StoreSyncSeconds - a.server.StoreSyncSeconds) / dt,
	}
}

// sortedKeys returns m's keys in order, for stable output.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// errInterrupted marks a run cut short by its context.
var errInterrupted = errors.New("interrupted")
