package bench

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
)

// TestSocketIOScenarios: with a /socket.io/ URL chatbench speaks Socket.IO
// to chatd's endpoint, and fanout and rooms come out clean (every message
// acknowledged and delivered once, in order, found by the fast parser).
func TestSocketIOScenarios(t *testing.T) {
	srv := chatdtest.Start(t, benchServerFlags...)
	url := strings.Replace(srv.URL, "/ws", "/socket.io/", 1)
	rep, err := Fanout(context.Background(), FanoutConfig{
		Options:      testOptions(url),
		Subscribers:  20,
		Rates:        []float64{2000},
		StepDuration: 500 * time.Millisecond,
		MaxP99:       5 * time.Second,
		AllSteps:     true,
	})
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep)
	requireClean(t, rep)
	if sessions := srv.Metric(t, `chatd_socketio_sessions{transport="websocket"}`); sessions != 0 && sessions != 21 {
		t.Fatalf("socket.io sessions %v", sessions)
	}
	rooms, err := Rooms(context.Background(), RoomsConfig{
		Options:     testOptions(url),
		Connections: 30, RoomSize: 5, Rate: 20, Duration: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rooms)
	requireClean(t, rooms)
	if rooms.Integrity.Expected != rooms.Integrity.Stored*5 {
		t.Fatalf("expected %d deliveries for %d messages in rooms of 5", rooms.Integrity.Expected, rooms.Integrity.Stored)
	}
	if got := srv.Metric(t, `chatd_protocol_connections_accepted_total{protocol="socketio"}`); got < 51 {
		t.Fatalf("socket.io connections accepted: %v, want at least 51", got)
	}
}
