package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/sys/unix"

	"github.com/ringchat/ringchat/chatd/wsframe"
)

// CalibrateConfig configures Calibrate.
type CalibrateConfig struct {
	// Sockets is the number of loopback TCP connections written to in
	// turn: the fan-out whose floor is reported (1000 by default).
	Sockets int
	// Duration is how long the rounds of writes go on (3s by default).
	Duration time.Duration
	// WriteBytes is the size of the one write per socket: a WebSocket
	// text frame of that size, as chatd writes a small message to one
	// subscriber (100 by default).
	WriteBytes int
}

// CalibrateReport is calibrate's section of the report: what one loopback
// write costs on this machine, the floor every fan-out figure is compared
// with (a message to K subscribers is K writes, one per socket).
type CalibrateReport struct {
	Sockets    int `json:"sockets"`
	WriteBytes int `json:"write_bytes"`
	// Rounds is the number of measured rounds (one write to every socket
	// each); Writes = Rounds × Sockets.
	Rounds  int     `json:"rounds"`
	Writes  uint64  `json:"writes"`
	Seconds float64 `json:"seconds"`
	// MeanWriteNS is the measured time over the writes; MedianWriteNS is
	// the median over the rounds of a round's time / Sockets (a round
	// disturbed by a preemption or the drain readers moves the mean, not
	// the median); P10 and P90 are over the rounds likewise.
	MeanWriteNS   float64 `json:"mean_write_ns"`
	MedianWriteNS float64 `json:"median_write_ns"`
	P10WriteNS    float64 `json:"p10_write_ns"`
	P90WriteNS    float64 `json:"p90_write_ns"`
	// ThreadCPUWriteNS is the writing thread's CPU time per write (user
	// and system), when the clock is readable: near MeanWriteNS when the
	// writer was not kept waiting.
	ThreadCPUWriteNS float64 `json:"thread_cpu_write_ns,omitempty"`
	// FanoutFloorUS is Sockets × MedianWriteNS in microseconds: the time
	// one message takes to reach Sockets subscribers at one write each,
	// before any other work. Pass MedianWriteNS to fanout and rooms as
	// --write-floor.
	FanoutFloorUS float64 `json:"fanout_floor_us"`
	// WriteFloor is MedianWriteNS as a duration, as --write-floor takes it.
	WriteFloor string `json:"write_floor"`
	// CPUs is the CPU affinity chatbench ran with (Cpus_allowed_list):
	// one CPU when pinned as the docs say.
	CPUs string `json:"cpus,omitempty"`
}

// calibrateWarmupRounds are written before measuring: the first rounds
// grow the sockets' buffers and fault in the kernel's paths.
const calibrateWarmupRounds = 20

// Calibrate measures the cost of one loopback write: it opens Sockets TCP
// connections over 127.0.0.1 to a listener in this process, drains each
// accepted one in a goroutine, and then from one goroutine locked to its
// thread writes one WriteBytes frame to each socket in turn (one write
// system call per socket, as chatd writes a message to each subscriber),
// round after round for Duration. Run it pinned to the core the server
// uses (taskset -c 0), with nothing else running.
func Calibrate(ctx context.Context, cfg CalibrateConfig) (*Report, error) {
	if cfg.Sockets <= 0 {
		cfg.Sockets = 1000
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 3 * time.Second
	}
	if cfg.WriteBytes <= 0 {
		cfg.WriteBytes = 100
	}
	if cfg.WriteBytes < 2 || cfg.WriteBytes > 127 {
		return nil, fmt.Errorf("calibrate: --write-bytes %d: want 2 to 127 (a WebSocket frame with a one-byte length)", cfg.WriteBytes)
	}
	started := time.Now()
	rep := &Report{FormatVersion: FormatVersion, Scenario: "calibrate", Started: started, URLs: []string{},
		Params: map[string]any{"sockets": cfg.Sockets, "duration": cfg.Duration.String(), "write_bytes": cfg.WriteBytes}}
	var notes []string
	limit, err := RaiseFileLimit()
	if err != nil {
		notes = append(notes, fmt.Sprintf("cannot raise the open-file limit: %v", err))
	}
	// Both ends of every connection are in this process.
	if capped, note := capConnections(2*cfg.Sockets, limit); note != "" {
		cfg.Sockets = capped / 2
		notes = append(notes, fmt.Sprintf("the open-file limit %d caps calibrate at %d sockets (each is two descriptors here)", limit, cfg.Sockets))
	}
	pair, err := openLoopbackPairs(ctx, cfg.Sockets)
	rep.Connections = ConnReport{Requested: cfg.Sockets, Opened: len(pair.writers), ClosedByServer: map[string]int{}}
	if err != nil {
		pair.close()
		return nil, fmt.Errorf("calibrate: %w", err)
	}
	rep.Connections.ConnectSeconds = time.Since(started).Seconds()
	cal, err := writeRounds(ctx, pair.writers, cfg)
	pair.close()
	if err != nil {
		return nil, fmt.Errorf("calibrate: %w", err)
	}
	cal.CPUs = allowedCPUs()
	if cal.CPUs != "" && strings.ContainsAny(cal.CPUs, ",-") {
		notes = append(notes, fmt.Sprintf("chatbench may run on CPUs %s: pin it to the server's core (taskset -c 0 chatbench calibrate) for the figure fan-out runs are compared with", cal.CPUs))
	}
	if ctx.Err() != nil {
		notes = append(notes, fmt.Sprintf("%v before the end: figures cover only part of the run", errInterrupted))
	}
	rep.Calibrate = cal
	rep.Notes = append([]string{}, notes...)
	rep.Seconds = time.Since(started).Seconds()
	rep.OK = ctx.Err() == nil && cal.Rounds > 0
	return rep, nil
}

// loopbackPairs are the writing ends of the calibration's connections and
// the goroutines draining the accepted ends.
type loopbackPairs struct {
	ln      net.Listener
	writers []*net.TCPConn
	readers []net.Conn
	drain   sync.WaitGroup
}

// openLoopbackPairs connects n sockets to a listener of its own and
// starts a reader per accepted connection that discards what arrives.
func openLoopbackPairs(ctx context.Context, n int) (*loopbackPairs, error) {
	p := &loopbackPairs{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return p, fmt.Errorf("listen: %w", err)
	}
	p.ln = ln
	var d net.Dialer
	for range n {
		c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
		if err != nil {
			return p, fmt.Errorf("dial %d of %d: %w", len(p.writers)+1, n, err)
		}
		a, err := ln.Accept()
		if err != nil {
			c.Close()
			return p, fmt.Errorf("accept: %w", err)
		}
		p.writers = append(p.writers, c.(*net.TCPConn))
		p.readers = append(p.readers, a)
		p.drain.Add(1)
		go func() {
			defer p.drain.Done()
			_, _ = io.Copy(io.Discard, a)
		}()
	}
	return p, nil
}

// close closes every socket and waits for the readers.
func (p *loopbackPairs) close() {
	for _, c := range p.writers {
		c.Close()
	}
	for _, c := range p.readers {
		c.Close()
	}
	if p.ln != nil {
		p.ln.Close()
	}
	p.drain.Wait()
}

// writeRounds writes one frame to every socket in turn, round after round,
// from this goroutine locked to its thread, and times the rounds.
func writeRounds(ctx context.Context, socks []*net.TCPConn, cfg CalibrateConfig) (*CalibrateReport, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	frame := calibrationFrame(cfg.WriteBytes)
	round := func() error {
		for _, c := range socks {
			if _, err := c.Write(frame); err != nil {
				return fmt.Errorf("write: %w", err)
			}
		}
		return nil
	}
	for range calibrateWarmupRounds {
		if err := round(); err != nil {
			return nil, err
		}
	}
	var rounds []time.Duration
	cpu0, cpuErr := threadCPU()
	start := time.Now()
	for time.Since(start) < cfg.Duration && ctx.Err() == nil {
		t := time.Now()
		if err := round(); err != nil {
			return nil, err
		}
		rounds = append(rounds, time.Since(t))
	}
	elapsed := time.Since(start)
	cpu1, cpuErr1 := threadCPU()
	if len(rounds) == 0 {
		return nil, errors.New("no round completed")
	}
	k := len(socks)
	cal := summariseRounds(rounds, k)
	cal.WriteBytes = cfg.WriteBytes
	cal.Seconds = elapsed.Seconds()
	if cpuErr == nil && cpuErr1 == nil {
		cal.ThreadCPUWriteNS = float64(cpu1-cpu0) / float64(cal.Writes)
	}
	return cal, nil
}

// summariseRounds turns the rounds' times (each k writes) into the
// per-write figures and the fan-out floor k × median.
func summariseRounds(rounds []time.Duration, k int) *CalibrateReport {
	perWrite := make([]float64, len(rounds))
	var total time.Duration
	for i, d := range rounds {
		total += d
		perWrite[i] = float64(d) / float64(k)
	}
	slices.Sort(perWrite)
	at := func(q float64) float64 { return perWrite[int(q*float64(len(perWrite)-1)+0.5)] }
	cal := &CalibrateReport{
		Sockets:       k,
		Rounds:        len(rounds),
		Writes:        uint64(len(rounds)) * uint64(k),
		MeanWriteNS:   float64(total) / float64(len(rounds)*k),
		MedianWriteNS: at(0.5),
		P10WriteNS:    at(0.1),
		P90WriteNS:    at(0.9),
	}
	cal.FanoutFloorUS = float64(k) * cal.MedianWriteNS / 1000
	cal.WriteFloor = time.Duration(cal.MedianWriteNS + 0.5).String()
	return cal
}

// calibrationFrame is a server-to-client WebSocket text frame of size
// bytes (2 to 127: a one-byte length), framed by chatd's own framer
// (chatd/wsframe), its payload a message frame padded with 'x': what chatd
// writes for a small message.
func calibrationFrame(size int) []byte {
	payload := []byte(`{"type":"message","room":"calibrate","seq":1,"text":"`)
	body := size - 2
	for len(payload) < body-2 {
		payload = append(payload, 'x')
	}
	payload = append(payload, `"}`...)
	return wsframe.Append(nil, websocket.TextMessage, payload[:body])
}

// threadCPU is the calling thread's CPU time (user and system).
func threadCPU() (time.Duration, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0, fmt.Errorf("thread cpu clock: %w", err)
	}
	return time.Duration(ts.Nano()), nil
}

// allowedCPUs is this process's Cpus_allowed_list, "" when unknown.
func allowedCPUs() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// floorFigures compares latencies with the fan-out floor: fanout writes
// at writeFloor each. It returns the floor in milliseconds and p50 and
// p99 (milliseconds) as multiples of it.
func floorFigures(p50MS, p99MS float64, fanout int, writeFloor time.Duration) (floorMS, p50x, p99x float64) {
	floorMS = float64(fanout) * float64(writeFloor) / float64(time.Millisecond)
	if floorMS <= 0 {
		return 0, 0, 0
	}
	return floorMS, p50MS / floorMS, p99MS / floorMS
}

// applyWriteFloor adds to every step its fan-out floor (fanout ×
// writeFloor) and its p50 and p99 as multiples of it; nothing when
// writeFloor is 0.
func applyWriteFloor(steps []StepReport, fanout int, writeFloor time.Duration) {
	if writeFloor <= 0 || fanout <= 0 {
		return
	}
	for i := range steps {
		s := &steps[i]
		floor, p50x, p99x := floorFigures(s.Latency.P50MS, s.Latency.P99MS, fanout, writeFloor)
		s.FloorMS, s.P50FloorMultiple, s.P99FloorMultiple = &floor, &p50x, &p99x
	}
}
