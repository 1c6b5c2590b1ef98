package bench

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"
)

// TestCalibrate: a short calibration writes every round to every socket
// and reports the floor as sockets × the median per-write time.
func TestCalibrate(t *testing.T) {
	rep, err := Calibrate(context.Background(), CalibrateConfig{Sockets: 20, Duration: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	m := checkReport(t, rep)
	c := rep.Calibrate
	if c == nil || !rep.OK || rep.Connections.Opened != 20 {
		t.Fatalf("report %+v, calibrate %+v", rep, c)
	}
	if c.Rounds == 0 || c.Writes != uint64(c.Rounds)*20 || c.WriteBytes != 100 || c.MedianWriteNS <= 0 || c.MeanWriteNS <= 0 ||
		c.P10WriteNS > c.MedianWriteNS || c.MedianWriteNS > c.P90WriteNS {
		t.Fatalf("calibrate %+v", c)
	}
	if math.Abs(c.FanoutFloorUS-20*c.MedianWriteNS/1000) > 1e-9 {
		t.Fatalf("floor %.3f µs, want 20 × %.0f ns", c.FanoutFloorUS, c.MedianWriteNS)
	}
	if d, err := time.ParseDuration(c.WriteFloor); err != nil || math.Abs(float64(d)-c.MedianWriteNS) > 1 {
		t.Fatalf("write_floor %q (%v) is not the median %.0f ns as --write-floor takes it", c.WriteFloor, err, c.MedianWriteNS)
	}
	if _, ok := m["calibrate"].(map[string]any)["fanout_floor_us"]; !ok {
		t.Fatalf("no calibrate.fanout_floor_us in %v", m["calibrate"])
	}
}

// TestSummariseRounds: per-write figures are a round's time over the
// sockets; the median is over rounds, the mean over all writes.
func TestSummariseRounds(t *testing.T) {
	us := time.Microsecond
	// Rounds of 1000 writes: 2 ms (2 µs a write) mostly, one disturbed.
	c := summariseRounds([]time.Duration{2000 * us, 2100 * us, 1900 * us, 2000 * us, 10000 * us}, 1000)
	if c.Rounds != 5 || c.Writes != 5000 || c.MedianWriteNS != 2000 || c.MeanWriteNS != 3600 || c.P10WriteNS != 1900 || c.P90WriteNS != 10000 {
		t.Fatalf("summary %+v", c)
	}
	if c.FanoutFloorUS != 2000 || c.WriteFloor != "2µs" {
		t.Fatalf("floor %v µs, --write-floor %s: want 2000 µs and 2µs", c.FanoutFloorUS, c.WriteFloor)
	}
}

// TestFloorFigures: the floor is fan-out × write floor, and the latencies
// are multiples of it.
func TestFloorFigures(t *testing.T) {
	floor, p50x, p99x := floorFigures(4, 30, 1000, 2*time.Microsecond) // 1000 × 2 µs = 2 ms
	if floor != 2 || p50x != 2 || p99x != 15 {
		t.Fatalf("floor %v ms, p50 × %v, p99 × %v: want 2, 2, 15", floor, p50x, p99x)
	}
	floor, p50x, p99x = floorFigures(0.5, 1, 5, 1800*time.Nanosecond) // a room of 5: 9 µs
	if math.Abs(floor-0.009) > 1e-12 || math.Abs(p50x-0.5/0.009) > 1e-9 || math.Abs(p99x-1/0.009) > 1e-9 {
		t.Fatalf("room of 5: floor %v ms, p50 × %v, p99 × %v", floor, p50x, p99x)
	}
	steps := []StepReport{{Step: 1, Latency: LatencyReport{P50MS: 3, P99MS: 12}}}
	applyWriteFloor(steps, 1000, 0)
	if steps[0].FloorMS != nil {
		t.Fatal("a floor without --write-floor")
	}
	applyWriteFloor(steps, 1000, 3*time.Microsecond)
	if s := steps[0]; s.FloorMS == nil || *s.FloorMS != 3 || *s.P50FloorMultiple != 1 || *s.P99FloorMultiple != 4 {
		t.Fatalf("step %+v", s)
	}
	var text strings.Builder
	if err := (&Report{Steps: steps}).WriteText(&text); err != nil || !strings.Contains(text.String(), "p99 × floor") {
		t.Fatalf("text %v:\n%s", err, text.String())
	}
}

func TestCalibrationFrame(t *testing.T) {
	for _, n := range []int{2, 60, 100, 127} {
		f := calibrationFrame(n)
		if len(f) != n || f[0] != 0x81 || int(f[1]) != n-2 {
			t.Fatalf("frame of %d: % x", n, f)
		}
	}
}
