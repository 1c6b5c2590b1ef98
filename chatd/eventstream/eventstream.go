// Package eventstream delivers every committed entry of the rooms this
// node owns — messages and deletions, the moderation log's included — to
// the application's backend: POSTed in batches to one URL, at least once,
// in each room's order, with retries and backoff, and a cursor per room
// that the owner keeps with the room's log (chatd/owner's stream.go), so
// delivery goes on after restarts and ownership moves (docs/api.md, "Event
// stream").
//
// One Streamer runs per node, with one batch in flight at a time: a room's
// entries are only read again after the batch that carried the previous
// ones was accepted or given up, which is what keeps each room in order.
// Rooms owned by other nodes are their streamers' business, so the backend
// receives up to one concurrent batch per node.
package eventstream

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/ringchat/ringchat/chatd/backoff"
	"github.com/ringchat/ringchat/chatd/feed"
	"github.com/ringchat/ringchat/chatd/metrics"
	"github.com/ringchat/ringchat/chatd/protocol"
	"github.com/ringchat/ringchat/chatd/reqsign"
)

// Source is the node's owner service, as the streamer sees it.
type Source interface {
	// Unstreamed returns the committed entries the backend does not have
	// yet, of the rooms this node owns: at most maxEntries, perRoom of one
	// room.
	Unstreamed(maxEntries, perRoom int) []feed.StreamBatch
	// StreamedUpTo records that the backend has a room's entries of
	// epoch up to seq.
	StreamedUpTo(room, epoch string, seq uint64)
	// ClaimUnstreamed takes on the rooms this node owns but does not
	// serve yet whose entries the backend does not all have.
	ClaimUnstreamed() int
}

// Defaults of Config's zero values.
const (
	DefaultTimeout       = 5 * time.Second
	DefaultMaxBatch      = 500
	DefaultPerRoom       = 200
	DefaultLinger        = 20 * time.Millisecond
	DefaultClaimInterval = 2 * time.Second
	DefaultBackoffBase   = 100 * time.Millisecond
	DefaultBackoffMax    = 10 * time.Second
)

// Config configures a Streamer.
type Config struct {
	// URL receives the batches (POST, JSON). Required.
	URL string
	// Node is this node's name, sent with every batch.
	Node string
	// Timeout bounds one POST.
	Timeout time.Duration
	// MaxBatch bounds the entries of one POST, PerRoom those of one room
	// in it (so one busy room does not hold the others back).
	MaxBatch, PerRoom int
	// Linger is how long the streamer waits after the first new entry
	// before it reads, so a burst goes out as one batch.
	Linger time.Duration
	// ClaimInterval is how often the streamer asks the owner service to
	// take on rooms it owns but does not serve (see Source).
	ClaimInterval time.Duration
	// BackoffBase and BackoffMax space out the retries of a failing
	// backend (full jitter, doubling).
	BackoffBase, BackoffMax time.Duration
	// Secret, when set, signs every POST as the hooks do
	// (reqsign.HeaderTimestamp, reqsign.HeaderSignature).
	Secret []byte
	// Client sends the POSTs; nil builds one.
	Client *http.Client
	// Metrics receives the measurements; nil drops them.
	Metrics *metrics.EventStream
	// Log receives failures; nil discards them.
	Log *slog.Logger
}

// Event is one entry of a batch: a room log entry (docs/protocol.md's
// message or deleted frame) with its room's epoch and an id stable across
// redeliveries.
type Event struct {
	// ID is "<epoch>-<seq>": the same entry always has the same id, so a
	// backend drops what it already has by id.
	ID      string `json:"id"`
	Type    string `json:"type"`
	Room    string `json:"room"`
	Epoch   string `json:"epoch"`
	Seq     uint64 `json:"seq"`
	From    string `json:"from"`
	CID     string `json:"cid,omitempty"`
	Text    string `json:"text"`
	Deleted bool   `json:"deleted,omitempty"`
	Target  uint64 `json:"target,omitempty"`
	TS      int64  `json:"ts"`
}

// Gap reports entries of a room that retention removed before the backend
// had them.
type Gap struct {
	Room  string `json:"room"`
	Epoch string `json:"epoch"`
	// Count entries, just before the room's first event in this batch,
	// are lost to the stream.
	Count uint64 `json:"count"`
}

// Batch is the body of one POST.
type Batch struct {
	// Node is the node that sent it (each node streams the rooms it owns).
	Node   string  `json:"node"`
	Events []Event `json:"events"`
	Gaps   []Gap   `json:"gaps,omitempty"`
}

// Streamer delivers the node's rooms to the backend.
type Streamer struct {
	cfg  Config
	src  Source
	log  *slog.Logger
	wake chan struct{}
}

// New returns a streamer; Run starts it. It exists before the owner
// service it reads (whose OnUnstreamed is its Notify).
func New(cfg Config) *Streamer {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.PerRoom <= 0 {
		cfg.PerRoom = DefaultPerRoom
	}
	if cfg.Linger < 0 {
		cfg.Linger = 0
	} else if cfg.Linger == 0 {
		cfg.Linger = DefaultLinger
	}
	if cfg.ClaimInterval <= 0 {
		cfg.ClaimInterval = DefaultClaimInterval
	}
	if cfg.BackoffBase <= 0 {
		cfg.BackoffBase = DefaultBackoffBase
	}
	if cfg.BackoffMax < cfg.BackoffBase {
		cfg.BackoffMax = max(DefaultBackoffMax, cfg.BackoffBase)
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Streamer{cfg: cfg, log: cfg.Log, wake: make(chan struct{}, 1)}
}

// Notify tells the streamer that a room has new entries. It never blocks;
// it is the owner service's OnUnstreamed.
func (s *Streamer) Notify() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run delivers src's rooms until ctx ends. It is the streamer's one
// goroutine; call it once.
func (s *Streamer) Run(ctx context.Context, src Source) {
	s.src = src
	claim := time.NewTicker(s.cfg.ClaimInterval)
	defer claim.Stop()
	bo := backoff.Backoff{Base: s.cfg.BackoffBase, Max: s.cfg.BackoffMax}
	s.src.ClaimUnstreamed()
	for {
		batches := s.src.Unstreamed(s.cfg.MaxBatch, s.cfg.PerRoom)
		if len(batches) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-claim.C:
				s.src.ClaimUnstreamed()
				continue
			case <-s.wake:
			}
			// Let a burst gather into one batch.
			if !sleep(ctx, s.cfg.Linger) {
				return
			}
			continue
		}
		switch s.deliver(ctx, batches) {
		case delivered:
			bo.Reset()
		case retry:
			if !sleep(ctx, bo.Next()) {
				return
			}
		}
		select {
		case <-claim.C:
			s.src.ClaimUnstreamed()
		default:
		}
		if ctx.Err() != nil {
			return
		}
	}
}

type outcome int

const (
	delivered outcome = iota
	retry
)

// deliver POSTs one batch and, when the backend accepted it or refused it
// for good, moves the rooms' cursors past it.
func (s *Streamer) deliver(ctx context.Context, batches []feed.StreamBatch) outcome {
	n := 0
	for _, b := range batches {
		n += len(b.Entries)
	}
	body := Batch{Node: s.cfg.Node, Events: make([]Event, 0, n)}
	for _, b := range batches {
		if b.Skipped > 0 {
			body.Gaps = append(body.Gaps, Gap{Room: b.Room, Epoch: b.Epoch, Count: b.Skipped})
		}
		for _, m := range b.Entries {
			body.Events = append(body.Events, eventOf(b.Epoch, m))
		}
	}
	payload, err := json.Marshal(body)
	if err != nil {
		s.log.Error("event stream: cannot encode a batch", "err", err)
		return retry
	}
	status, err := s.post(ctx, payload)
	m := s.cfg.Metrics
	switch {
	case err == nil && status/100 == 2:
		if m != nil {
			now := time.Now()
			deletions := 0
			for _, e := range body.Events {
				if e.Type == protocol.TypeDeleted {
					deletions++
				}
				m.Lag.Observe(now.Sub(time.UnixMilli(e.TS)).Seconds())
			}
			m.Delivered.WithLabelValues(protocol.TypeMessage).Add(float64(len(body.Events) - deletions))
			m.Delivered.WithLabelValues(protocol.TypeDeleted).Add(float64(deletions))
			m.Batches.WithLabelValues("ok").Inc()
		}
	case err == nil && status/100 == 4 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests:
		s.log.Error("event stream: the backend refused a batch for good; its entries are dead letters and the stream goes on",
			"status", status, "events", len(body.Events), "rooms", len(batches))
		if m != nil {
			m.Batches.WithLabelValues("dead_letter").Inc()
			m.DeadLetters.Add(float64(len(body.Events)))
		}
	default:
		if err == nil {
			err = fmt.Errorf("status %d", status)
		}
		if ctx.Err() == nil {
			s.log.Warn("event stream: the backend did not take a batch; sending it again", "events", len(body.Events), "err", err)
		}
		if m != nil {
			m.Batches.WithLabelValues("retry").Inc()
		}
		return retry
	}
	for _, b := range batches {
		if m != nil && b.Skipped > 0 {
			m.Skipped.Add(float64(b.Skipped))
		}
		if b.Through > 0 {
			s.src.StreamedUpTo(b.Room, b.Epoch, b.Through)
		}
	}
	return delivered
}

// eventOf is the event of a room log entry.
func eventOf(epoch string, m protocol.Message) Event {
	return Event{ID: m.MID, Type: m.Type, Room: m.Room, Epoch: epoch, Seq: m.Seq, From: m.From, CID: m.CID, Text: m.Text,
		Deleted: m.Deleted, Target: m.Target, TS: m.TS}
}

// post sends one batch and returns the backend's status.
func (s *Streamer) post(ctx context.Context, payload []byte) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, bytes.NewReader(payload))
	if err != nil {
		return 0, fmt.Errorf("build the request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if s.cfg.Secret != nil {
		ts, sig := reqsign.Sign(s.cfg.Secret, time.Now(), payload)
		req.Header.Set(reqsign.HeaderTimestamp, ts)
		req.Header.Set(reqsign.HeaderSignature, sig)
	}
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		return 0, err
	}
	// The answer's body means nothing; reading a little of it lets the
	// connection be reused, and a failure to close it cannot matter.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// sleep waits d or until ctx ends; false when ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
