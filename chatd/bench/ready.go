package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/ringchat/ringchat/chatd/client"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// ReadyConfig configures Ready.
type ReadyConfig struct {
	Options
	// StartedAt is when the server process was started; zero: read from
	// /proc/<ServerPID> (10 ms resolution).
	StartedAt time.Time
	// Rooms named RoomName(RoomPrefix, 0 … Rooms-1) hold the fill's
	// messages; the first page is read from a random one of them, and
	// checked to have head MessagesPerRoom when that is positive. Rooms 0:
	// readiness only.
	Rooms           int
	RoomPrefix      string
	MessagesPerRoom int
	// Poll is the /readyz polling period; Timeout bounds the wait.
	Poll    time.Duration
	Timeout time.Duration
	// Hold is how long to wait, once the page is read, before reading the
	// server's idle memory.
	Hold time.Duration
}

// ReadyReport is how long a (re)started server took to be useful.
type ReadyReport struct {
	// StartedFrom says where the start time came from ("--started-at" or
	// "/proc/<pid>").
	StartedFrom string    `json:"started_from"`
	StartedAt   time.Time `json:"started_at"`
	// ReadySeconds is process start → the first 200 from /readyz.
	ReadySeconds float64 `json:"ready_seconds"`
	Polls        int     `json:"polls"`
	// FirstPageSeconds is process start → the first history page of a
	// stored room read by a new connection (dial, hello, request, page).
	FirstPageSeconds float64 `json:"first_page_seconds,omitempty"`
	FirstPageRoom    string  `json:"first_page_room,omitempty"`
	// FirstPageMS is that page's request→page latency.
	FirstPageMS float64 `json:"first_page_ms,omitempty"`
	// PageProblem says what was wrong with the page, if anything.
	PageProblem     string      `json:"page_problem,omitempty"`
	RSSAtReadyBytes uint64      `json:"rss_at_ready_bytes,omitempty"`
	Idle            *IdleReport `json:"idle,omitempty"`
}

// Ready measures a server (re)start: the time from the process's start to
// /readyz answering 200 and to the first history page of a stored room,
// then the server's memory once idle. Run it right after starting chatd
// on an existing --data-dir (hack/bench-durable.sh does).
func Ready(ctx context.Context, cfg ReadyConfig) (*Report, error) {
	if cfg.ServerPID <= 0 && cfg.StartedAt.IsZero() {
		return nil, errors.New("ready needs --server-pid (the process just started) or --started-at")
	}
	if cfg.Rooms < 0 || cfg.MessagesPerRoom < 0 {
		return nil, errors.New("ready --rooms and --messages-per-room must not be negative")
	}
	if cfg.Rooms > 0 {
		if err := checkPrefix(cfg.RoomPrefix); err != nil {
			return nil, err
		}
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 5 * time.Millisecond
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Minute
	}
	// The server may not listen yet: its figures are looked up once it is
	// ready.
	statsMode := cfg.Stats
	switch statsMode {
	case "":
		statsMode = "auto"
	case "auto", "proc", "metrics", "none":
	default:
		return nil, fmt.Errorf("--server-stats %q: want auto, proc, metrics or none", statsMode)
	}
	opts := cfg.Options
	opts.Stats = "none"
	run, err := newRun("ready", opts)
	if err != nil {
		return nil, err
	}
	run.opts.Stats = statsMode
	rr := &ReadyReport{StartedAt: cfg.StartedAt, StartedFrom: "--started-at"}
	rep := run.newReport(map[string]any{
		"rooms": cfg.Rooms, "room_prefix": cfg.RoomPrefix, "messages_per_room": cfg.MessagesPerRoom,
		"poll": cfg.Poll.String(), "timeout": cfg.Timeout.String(), "hold": cfg.Hold.String(), "server_pid": cfg.ServerPID,
	})
	rep.Ready = rr
	if cfg.StartedAt.IsZero() {
		at, err := procStartTime(cfg.ServerPID)
		if err != nil {
			return nil, err
		}
		rr.StartedAt, rr.StartedFrom = at, fmt.Sprintf("/proc/%d", cfg.ServerPID)
	}

	run.setPhase("waiting for /readyz")
	stop := run.progress(ctx, func() string { return fmt.Sprintf("polls %d", rr.Polls) })
	origin := httpOrigin(run.opts.URLs[0])
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := rr.StartedAt.Add(cfg.Timeout)
	for {
		rr.Polls++
		ok, _ := readyz(ctx, hc, origin)
		if ok {
			rr.ReadySeconds = time.Since(rr.StartedAt).Seconds()
			if rr.Polls == 1 {
				run.note("the server was ready at the first poll: %.3fs is an upper bound (chatbench started polling after it was ready)", rr.ReadySeconds)
			}
			break
		}
		if time.Now().After(deadline) {
			stop()
			return run.finish(ctx, rep, fmt.Errorf("%s/readyz not ready %v after the start", origin, cfg.Timeout)), nil
		}
		if !client.Sleep(ctx, cfg.Poll) {
			stop()
			return run.finish(ctx, rep, ctx.Err()), nil
		}
	}
	stop()

	if cfg.Rooms > 0 {
		room := RoomName(cfg.RoomPrefix, rand.IntN(cfg.Rooms))
		rr.FirstPageRoom = room
		page, lat, err := firstPage(ctx, run, room)
		rep.Connections.Requested = 1
		if err != nil {
			rep.Connections.Failed = 1
			rep.Connections.FailureSamples = []string{err.Error()}
			return run.finish(ctx, rep, fmt.Errorf("first page of %s: %w", room, err)), nil
		}
		rep.Connections.Opened = 1
		rr.FirstPageSeconds = time.Since(rr.StartedAt).Seconds()
		rr.FirstPageMS = float64(lat.Microseconds()) / 1000
		if err := checkPage(page, room, 0, protocol.MaxHistoryReq, uint64(cfg.MessagesPerRoom)); err != nil {
			rr.PageProblem = err.Error()
		}
	}

	stats, notes := newServerStats(statsMode, cfg.ServerPID, firstOf(run.opts.MetricsURLs), run.opts.URLs[0])
	run.stats = stats
	run.notes = append(run.notes, notes...)
	if stats.source != "none" {
		if s, err := stats.sample(); err == nil {
			rr.RSSAtReadyBytes = s.RSSBytes
		}
		idle, err := run.idleMemory(ctx, 0, cfg.Hold)
		rr.Idle = idle
		if err != nil {
			run.note("idle memory: %v", err)
		}
	}
	return run.finish(ctx, rep, nil), nil
}

// firstPage opens a connection and reads room's newest page; the latency
// is request→page.
func firstPage(ctx context.Context, run *runState, room string) (*protocol.HistoryPage, time.Duration, error) {
	dc := run.dialConfig(0)
	dctx, cancel := context.WithTimeout(ctx, dc.timeout)
	defer cancel()
	ws, err := dialHello(dctx, run.opts.URLs[0], "b"+run.id+"-ready", dc)
	if err != nil {
		return nil, 0, err
	}
	defer ws.Close()
	req, _ := json.Marshal(protocol.ClientFrame{Type: protocol.TypeHistory, ID: "first", Room: room, Limit: protocol.MaxHistoryReq})
	start := time.Now()
	if err := ws.WriteMessage(websocket.TextMessage, req); err != nil {
		return nil, 0, fmt.Errorf("send history: %w", err)
	}
	raw, err := expectFrame(ws, protocol.TypeHistory)
	lat := time.Since(start)
	if err != nil {
		return nil, 0, err
	}
	var p protocol.HistoryPage
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, 0, fmt.Errorf("decode history: %w", err)
	}
	return &p, lat, nil
}

// procStartTime is when process pid started: its age from /proc/<pid>/stat
// (starttime, in clock ticks since boot) and /proc/uptime, subtracted from
// now.
func procStartTime(pid int) (time.Time, error) {
	now := time.Now()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return time.Time{}, fmt.Errorf("start time of process %d: %w", pid, err)
	}
	up, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return time.Time{}, fmt.Errorf("read /proc/uptime: %w", err)
	}
	return startFromProc(stat, up, now)
}

// startFromProc computes a start time from a /proc/<pid>/stat and a
// /proc/uptime read at now.
func startFromProc(stat, uptime []byte, now time.Time) (time.Time, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return time.Time{}, errors.New("parse process stat: no command name")
	}
	// Fields after the command name start at field 3 (state); starttime
	// is field 22.
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 20 {
		return time.Time{}, errors.New("parse process stat: too few fields")
	}
	ticks, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse process starttime: %w", err)
	}
	upF := strings.Fields(string(uptime))
	if len(upF) < 1 {
		return time.Time{}, errors.New("parse /proc/uptime: empty")
	}
	up, err := strconv.ParseFloat(upF[0], 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse /proc/uptime: %w", err)
	}
	age := up - float64(ticks)/clockTicks
	if age < 0 {
		age = 0
	}
	return now.Add(-time.Duration(age * float64(time.Second))), nil
}
