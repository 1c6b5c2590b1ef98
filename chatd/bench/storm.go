package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ringchat/ringchat/chatd/client"
)

// StormConfig configures Storm.
type StormConfig struct {
	Options
	// Connections to open, as fast as DialConcurrency allows.
	Connections int
	// RoomSize is the number of connections (each its own user) per room.
	RoomSize int
	// Reconnect adds the reconnect storm: every connection closes, then
	// all reconnect at once and resume their room.
	Reconnect bool
	// Quiet is how long no presence frame may arrive before a phase's
	// presence traffic counts as over.
	Quiet time.Duration
}

// StormReport is storm's section of the report.
type StormReport struct {
	Join      StormPhase  `json:"join"`
	Reconnect *StormPhase `json:"reconnect,omitempty"`
}

// StormPhase is one storm: connections opened (each said hello and joined
// or resumed its room) and the presence frames it caused.
type StormPhase struct {
	Requested int     `json:"requested"`
	Opened    int     `json:"opened"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"per_second"`
	// PresenceFrames is the number of presence frames the clients
	// received from the phase's start until none arrived for Quiet.
	PresenceFrames uint64 `json:"presence_frames"`
	// Recovered counts resumes answered with recovered:true (reconnect).
	Recovered int `json:"recovered,omitempty"`
}

// Storm opens Connections connections into rooms of RoomSize as fast as it
// can, each a user of its own joining its room, and reports the rate and
// the presence frames the joins caused (every member hears of every other
// member's arrival). With Reconnect, every connection then closes and all
// reconnect at once, each resuming its room from what it had seen (a join
// with since and epoch), as every client of a node does after a deploy or
// a node loss; the report says how long until all were back and how many
// resumes recovered.
func Storm(ctx context.Context, cfg StormConfig) (*Report, error) {
	if cfg.Connections < 1 || cfg.RoomSize < 1 {
		return nil, errors.New("storm needs --connections ≥ 1 and --room-size ≥ 1")
	}
	if cfg.Quiet <= 0 {
		cfg.Quiet = time.Second
	}
	run, err := newRun("storm", cfg.Options)
	if err != nil {
		return nil, err
	}
	n, capNote := capConnections(cfg.Connections, run.fdLimit)
	if capNote != "" {
		run.notes = append(run.notes, capNote)
	}
	if note := portRangeNote(run.perSource(n / len(run.opts.URLs))); note != "" {
		run.notes = append(run.notes, note)
	}
	rooms := make([]*room, max(1, n/cfg.RoomSize))
	for i := range rooms {
		rooms[i] = run.newRoom(fmt.Sprint("storm-", i))
	}
	specs := make([]connSpec, n)
	for i := range specs {
		specs[i] = connSpec{url: run.opts.URLs[i%len(run.opts.URLs)], room: rooms[i/cfg.RoomSize%len(rooms)], user: fmt.Sprintf("s%s-%d", run.id, i)}
	}
	rep := run.newReport(map[string]any{"connections": cfg.Connections, "room_size": cfg.RoomSize, "reconnect": cfg.Reconnect,
		"dial_concurrency": run.opts.DialConcurrency})
	before := run.mark()

	run.setPhase("join storm")
	conns, join := run.stormPhase(ctx, specs, cfg.Quiet)
	storm := &StormReport{Join: join}
	if cfg.Reconnect && ctx.Err() == nil {
		resumed := make([]connSpec, 0, len(conns))
		for i, c := range conns {
			if c != nil {
				s := specs[i]
				s.resume = &resumePoint{epoch: c.epoch, since: c.seqs.last}
				resumed = append(resumed, s)
			}
		}
		run.teardown()
		run.conns = nil
		run.setPhase("reconnect storm")
		again, phase := run.stormPhase(ctx, resumed, cfg.Quiet)
		for _, c := range again {
			if c != nil && c.recovered {
				phase.Recovered++
			}
		}
		storm.Reconnect = &phase
		if phase.Recovered < phase.Opened {
			run.note("%d of %d resumes did not recover", phase.Opened-phase.Recovered, phase.Opened)
		}
	}
	rep.Storm = storm
	rep.Connections = run.connReport(n)
	rep.Server = run.serverReport(before, before, run.mark())
	run.teardown()
	return run.finish(ctx, rep, nil), nil
}

// stormPhase opens specs at once and waits until presence traffic is
// quiet.
func (r *runState) stormPhase(ctx context.Context, specs []connSpec, quiet time.Duration) ([]*conn, StormPhase) {
	p0 := r.presence.Load()
	start := time.Now()
	conns := r.connect(ctx, specs)
	secs := time.Since(start).Seconds()
	phase := StormPhase{Requested: len(specs), Seconds: secs}
	for _, c := range conns {
		if c != nil {
			phase.Opened++
		}
	}
	if secs > 0 {
		phase.PerSecond = float64(phase.Opened) / secs
	}
	for last := r.presence.Load(); ctx.Err() == nil; {
		client.Sleep(ctx, quiet)
		now := r.presence.Load()
		if now == last {
			break
		}
		last = now
	}
	phase.PresenceFrames = r.presence.Load() - p0
	return conns, phase
}
