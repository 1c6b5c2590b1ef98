package bench

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
)

// productionServer starts chatd as production runs it: tokens only (no
// --allow-anonymous), the default rate limit (20 frames/s, burst 40), and
// a per-IP cap of perIP connections. It returns the server and the secret
// file both sides read.
func productionServer(t *testing.T, perIP int) (*chatdtest.Server, string) {
	t.Helper()
	secret := chatdtest.SecretFile(t, "jwt-secret", "bench-secret-0123456789abcdef-0123456789\n")
	srv := chatdtest.StartWith(t, []string{"--jwt-secret-file", secret, "--node-name", "test-node", "--log-level", "error"},
		"--max-connections-per-ip", strconv.Itoa(perIP))
	return srv, secret
}

// TestProductionDefaults: against a chatd without --allow-anonymous whose
// per-IP cap is 3, fanout and rooms with minted tokens and 3 source
// addresses open 9 connections each (so the server saw 3 addresses: one
// carries at most 3) and deliver every message; anonymous hellos are
// refused, so the tokens are what let them in.
func TestProductionDefaults(t *testing.T) {
	const perIP, addrs = 3, 3
	srv, secret := productionServer(t, perIP)
	opts := srvOptions(srv)
	opts.TokenSecretFile, opts.SourceAddrs = secret, addrs

	rep, err := Fanout(context.Background(), FanoutConfig{
		Options:      opts,
		Subscribers:  perIP*addrs - 1, // and the publisher
		Rates:        []float64{80},   // 10 messages/s, under the 20/s rate limit
		StepDuration: 500 * time.Millisecond,
		MaxP99:       5 * time.Second,
		AllSteps:     true,
	})
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep)
	if rep.Connections.Opened != perIP*addrs {
		t.Fatalf("fanout opened %d connections, want %d (%d per source address): %v", rep.Connections.Opened, perIP*addrs, perIP, rep.Connections.FailureSamples)
	}
	requireClean(t, rep)

	rep, err = Rooms(context.Background(), RoomsConfig{
		Options:     opts,
		Connections: perIP * addrs, RoomSize: 3, Rate: 4, Duration: 500 * time.Millisecond,
		WriteFloor: time.Microsecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep)
	if rep.Connections.Opened != perIP*addrs {
		t.Fatalf("rooms opened %d connections, want %d: %v", rep.Connections.Opened, perIP*addrs, rep.Connections.FailureSamples)
	}
	requireClean(t, rep)
	// A room of 3 at 1 µs a write: a floor of 3 µs.
	if s := rep.Steps[0]; s.FloorMS == nil || *s.FloorMS != 0.003 || *s.P50FloorMultiple != s.Latency.P50MS/0.003 {
		t.Fatalf("rooms step with --write-floor 1µs: floor %v, p50 × %v", s.FloorMS, s.P50FloorMultiple)
	}

	anon := srvOptions(srv)
	anon.SourceAddrs = addrs
	rep, err = Idle(context.Background(), IdleConfig{Options: anon, Connections: 1, Rooms: 1})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Connections.Opened != 0 || rep.OK {
		t.Fatalf("an anonymous hello was let in by a server without --allow-anonymous: %+v", rep.Connections)
	}
}

// TestSourceAddrs: connections go round robin over 127.0.0.2 … 127.0.0.(n+1),
// and the flag refuses what it cannot reach.
func TestSourceAddrs(t *testing.T) {
	if ip := sourceAddr(5, 0); ip != nil {
		t.Fatalf("sourceAddr(5, 0) = %v, want nil (the kernel's choice)", ip)
	}
	var got []string
	for i := range 5 {
		got = append(got, sourceAddr(i, 3).String())
	}
	if want := "127.0.0.2 127.0.0.3 127.0.0.4 127.0.0.2 127.0.0.3"; strings.Join(got, " ") != want {
		t.Fatalf("source addresses %v, want %s", got, want)
	}
	local := []string{"ws://127.0.0.1:8080/ws"}
	for _, c := range []struct {
		n      int
		remote bool
		urls   []string
		ok     bool
	}{
		{0, true, local, true},
		{20, false, local, true},
		{MaxSourceAddrs, false, []string{"ws://localhost:8080/ws"}, true},
		{MaxSourceAddrs + 1, false, local, false},
		{-1, false, local, false},
		{3, true, local, false},
		{3, false, []string{"ws://[::1]:8080/ws"}, false},
	} {
		if err := CheckSourceAddrs(c.n, c.remote, c.urls); (err == nil) != c.ok {
			t.Errorf("CheckSourceAddrs(%d, %v, %v) = %v, want ok %v", c.n, c.remote, c.urls, err, c.ok)
		}
	}
}
