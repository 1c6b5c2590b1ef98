package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
)

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestFanoutJSON(t *testing.T) {
	srv := chatdtest.Start(t, "--rate", "1000000", "--rate-burst", "1000000", "--max-connections-per-ip", "0")
	code, out, stderr := runCLI(t, "fanout", "--url", srv.URL, "--subscribers", "5", "--rates", "500,1k",
		"--step-duration", "300ms", "--warmup", "100ms", "--tick", "2ms", "--all-steps", "--json", "--quiet")
	if code != exitOK {
		t.Fatalf("exit %d; stderr %q; stdout %s", code, stderr, out)
	}
	if stderr != "" {
		t.Fatalf("--quiet printed progress: %q", stderr)
	}
	var rep struct {
		FormatVersion int    `json:"format_version"`
		Scenario      string `json:"scenario"`
		OK            bool   `json:"ok"`
		Steps         []struct {
			TargetDeliveries float64 `json:"target_deliveries_per_sec"`
			Latency          struct {
				Count int64   `json:"count"`
				P99   float64 `json:"p99_ms"`
			} `json:"latency"`
		} `json:"steps"`
		Integrity struct {
			Expected  uint64 `json:"expected_deliveries"`
			Delivered uint64 `json:"delivered"`
			Lost      uint64 `json:"lost"`
			Clean     bool   `json:"clean"`
		} `json:"integrity"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("stdout is not the JSON report: %v\n%s", err, out)
	}
	if rep.FormatVersion != 1 || rep.Scenario != "fanout" || !rep.OK || !rep.Integrity.Clean || rep.Integrity.Lost != 0 ||
		rep.Integrity.Delivered != rep.Integrity.Expected || len(rep.Steps) != 2 || rep.Steps[1].TargetDeliveries != 1000 ||
		rep.Steps[0].Latency.Count == 0 {
		t.Fatalf("report %+v", rep)
	}
}

func TestRoomsText(t *testing.T) {
	srv := chatdtest.Start(t, "--rate", "1000000", "--rate-burst", "1000000", "--max-connections-per-ip", "0")
	code, out, stderr := runCLI(t, "rooms", "--url", srv.URL, "--connections", "10", "--room-size", "5", "--rate", "10",
		"--duration", "500ms", "--warmup", "100ms")
	if code != exitOK {
		t.Fatalf("exit %d; stderr %q; stdout %s", code, stderr, out)
	}
	for _, want := range []string{"chatbench rooms", "lost 0", "duplicated 0", "out of order 0", "result: OK"} {
		if !strings.Contains(out, want) {
			t.Fatalf("report lacks %q:\n%s", want, out)
		}
	}
}

func TestUsage(t *testing.T) {
	if code, out, _ := runCLI(t, "help"); code != exitOK || !strings.Contains(out, "Exit codes (stable)") || !strings.Contains(out, "--rate-burst 1000000") {
		t.Fatalf("help: exit %d\n%s", code, out)
	}
	for _, s := range scenarios {
		if code, out, _ := runCLI(t, s.name, "--help"); code != exitOK || !strings.Contains(out, "Usage: chatbench "+s.name) || !strings.Contains(out, "-allow-remote") {
			t.Fatalf("%s --help: exit %d\n%s", s.name, code, out)
		}
	}
	if code, _, _ := runCLI(t, "rooms", "--no-such-flag"); code != exitUsage {
		t.Fatalf("unknown flag: exit %d", code)
	}
	if code, _, _ := runCLI(t, "nope"); code != exitUsage {
		t.Fatalf("unknown scenario: exit %d", code)
	}
	if code, _, _ := runCLI(t); code != exitUsage {
		t.Fatalf("no arguments: exit %d", code)
	}
	code, _, stderr := runCLI(t, "idle", "--url", "ws://192.0.2.7:8080/ws", "--quiet")
	if code != exitFailure || !strings.Contains(stderr, "--allow-remote") {
		t.Fatalf("remote target: exit %d, stderr %q", code, stderr)
	}
	if code, _, _ := runCLI(t, "fanout", "--rates", "fast"); code != exitUsage {
		t.Fatalf("bad rate: exit %d", code)
	}
	if v, err := parseRate("1.5M"); err != nil || v != 1.5e6 {
		t.Fatalf("parseRate(1.5M) = %v, %v", v, err)
	}
}

// TestDurableCLI: fill writes through a durable server, history reads the
// rooms back, and a page that lacks a written message exits 3.
func TestDurableCLI(t *testing.T) {
	srv := chatdtest.Start(t, "--data-dir", t.TempDir(), "--rate", "1000000", "--rate-burst", "1000000", "--max-connections-per-ip", "0")
	code, out, stderr := runCLI(t, "fill", "--url", srv.URL, "--rooms", "4", "--messages-per-room", "10", "--room-prefix", "cli",
		"--connections", "2", "--batch", "2", "--json", "--quiet")
	if code != exitOK {
		t.Fatalf("fill: exit %d; stderr %q; stdout %s", code, stderr, out)
	}
	var rep struct {
		OK   bool `json:"ok"`
		Fill struct {
			RoomsFilled int    `json:"rooms_filled"`
			Messages    uint64 `json:"messages"`
		} `json:"fill"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || !rep.OK || rep.Fill.RoomsFilled != 4 || rep.Fill.Messages != 40 {
		t.Fatalf("fill report %+v (%v):\n%s", rep, err, out)
	}
	code, out, stderr = runCLI(t, "history", "--url", srv.URL, "--rooms", "4", "--messages-per-room", "10", "--room-prefix", "cli", "--limit", "3")
	if code != exitOK || !strings.Contains(out, "bad pages 0") || !strings.Contains(out, "cold pages") {
		t.Fatalf("history: exit %d; stderr %q; stdout %s", code, stderr, out)
	}
	code, out, _ = runCLI(t, "history", "--url", srv.URL, "--rooms", "4", "--messages-per-room", "11", "--room-prefix", "cli", "--quiet")
	if code != exitIntegrity || !strings.Contains(out, "head 10, want 11") {
		t.Fatalf("history expecting a message that is not there: exit %d\n%s", code, out)
	}
	code, out, stderr = runCLI(t, "rooms", "--url", srv.URL, "--connections", "4", "--room-size", "2", "--total-rate", "40",
		"--duration", "300ms", "--warmup", "100ms", "--quiet")
	if code != exitOK || !strings.Contains(out, "ack p99 ms") {
		t.Fatalf("rooms --total-rate: exit %d; stderr %q; stdout %s", code, stderr, out)
	}
	if code, _, stderr := runCLI(t, "ready", "--url", srv.URL, "--quiet"); code != exitFailure || !strings.Contains(stderr, "--server-pid") {
		t.Fatalf("ready without a pid: exit %d, stderr %q", code, stderr)
	}
	if code, _, _ := runCLI(t, "ready", "--url", srv.URL, "--started-at", "yesterday"); code != exitFailure {
		t.Fatalf("ready --started-at yesterday: exit %d", code)
	}
	if at, err := parseTime("1700000000123456789"); err != nil || at.UnixNano() != 1700000000123456789 {
		t.Fatalf("parseTime(ns) = %v, %v", at, err)
	}
}

// TestProductionFlags: --token-secret-file and --source-addrs let fanout
// run against chatd's production defaults (no --allow-anonymous, rate
// limit 20/s) with a per-IP cap of 2: 6 connections need the 3 source
// addresses. --source-addrs with --allow-remote is a usage error.
func TestProductionFlags(t *testing.T) {
	secret := chatdtest.SecretFile(t, "jwt-secret", "cli-secret-0123456789abcdef-0123456789")
	srv := chatdtest.StartWith(t, []string{"--jwt-secret-file", secret, "--log-level", "error"}, "--max-connections-per-ip", "2")
	code, out, stderr := runCLI(t, "fanout", "--url", srv.URL, "--token-secret-file", secret, "--source-addrs", "3",
		"--subscribers", "5", "--rates", "50", "--step-duration", "300ms", "--warmup", "100ms", "--max-p99", "5s", "--quiet",
		"--rule", "sustain", "--write-floor", "2µs")
	if code != exitOK || !strings.Contains(out, "opened 6 of 6") || !strings.Contains(out, "lost 0") || !strings.Contains(out, "rule=sustain") ||
		!strings.Contains(out, "p50 halves ms") || !strings.Contains(out, "p50 × floor") || !strings.Contains(out, "0.010  ") {
		t.Fatalf("fanout with tokens over 3 source addresses: exit %d; stderr %q; stdout %s", code, stderr, out)
	}
	if code, _, _ := runCLI(t, "fanout", "--rule", "strict"); code != exitUsage {
		t.Fatalf("--rule strict: exit %d", code)
	}
	code, _, stderr = runCLI(t, "rooms", "--url", srv.URL, "--allow-remote", "--source-addrs", "3", "--quiet")
	if code != exitUsage || !strings.Contains(stderr, "--allow-remote") {
		t.Fatalf("--source-addrs with --allow-remote: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = runCLI(t, "idle", "--url", srv.URL, "--token-secret-file", chatdtest.SecretFile(t, "short", "short"), "--quiet")
	if code != exitFailure || !strings.Contains(stderr, "at least 32") {
		t.Fatalf("short secret: exit %d, stderr %q", code, stderr)
	}
}

// TestCalibrateCLI: calibrate needs no server and prints the --write-floor
// to give fanout and rooms.
func TestCalibrateCLI(t *testing.T) {
	code, out, stderr := runCLI(t, "calibrate", "--sockets", "10", "--duration", "100ms", "--json")
	var rep struct {
		OK        bool `json:"ok"`
		Calibrate struct {
			Sockets    int     `json:"sockets"`
			Median     float64 `json:"median_write_ns"`
			WriteFloor string  `json:"write_floor"`
		} `json:"calibrate"`
	}
	if err := json.Unmarshal([]byte(out), &rep); code != exitOK || err != nil || !rep.OK || rep.Calibrate.Sockets != 10 ||
		rep.Calibrate.Median <= 0 || rep.Calibrate.WriteFloor == "" {
		t.Fatalf("calibrate: exit %d (%v); stderr %q; stdout %s", code, err, stderr, out)
	}
	if code, out, _ := runCLI(t, "calibrate", "--sockets", "10", "--duration", "100ms"); code != exitOK || !strings.Contains(out, "--write-floor ") ||
		!strings.Contains(out, "fan-out floor") {
		t.Fatalf("calibrate text: exit %d\n%s", code, out)
	}
	if code, _, _ := runCLI(t, "calibrate", "--write-bytes", "200", "--quiet"); code != exitFailure {
		t.Fatalf("--write-bytes 200: exit %d", code)
	}
}
