package membership

import (
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/ringchat/ringchat/chatd/internal/testtime"
)

func TestDecodeMetaIsDefensive(t *testing.T) {
	t.Parallel()
	good, err := Meta{RPCAddr: "10.0.0.1:7947", State: StateActive, Proto: 2}.encode()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		in      []byte
		want    Meta
		wantErr bool
	}{
		{"valid", good, Meta{RPCAddr: "10.0.0.1:7947", State: StateActive, Proto: 2}, false},
		{"empty", nil, Meta{State: StateJoining}, true},
		{"garbage", []byte{0xff, 0x00, '{'}, Meta{State: StateJoining}, true},
		{"wrong types", []byte(`{"r":7,"s":["x"]}`), Meta{State: StateJoining}, true},
		{"unknown state", []byte(`{"r":"10.0.0.2:1","s":"hibernating"}`), Meta{RPCAddr: "10.0.0.2:1", State: StateJoining}, true},
		{"missing state", []byte(`{"r":"10.0.0.2:1"}`), Meta{RPCAddr: "10.0.0.2:1", State: StateJoining}, true},
		{"unknown fields ignored", []byte(`{"s":"draining","future":true}`), Meta{State: StateDraining}, false},
	}
	for _, tc := range cases {
		got, err := decodeMeta(tc.in)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("%s: decodeMeta = %+v, %v; want %+v, err %v", tc.name, got, err, tc.want, tc.wantErr)
		}
	}
}

// TestBadRemoteMetaJoinsAsJoining feeds a memberlist notification with
// garbage metadata straight to the event handler, as a peer running other
// software would cause.
func TestBadRemoteMetaJoinsAsJoining(t *testing.T) {
	t.Parallel()
	n := newNode(t, testConfig("self"))
	d := &delegates{m: n.Membership}
	d.NotifyJoin(&memberlist.Node{Name: "weird", Addr: net.IPv4(10, 0, 0, 9), Port: 7946, Meta: []byte("not json")})
	v := n.View()
	m, ok := v.Get("weird")
	if !ok || m.Meta.State != StateJoining || m.GossipAddr != "10.0.0.9:7946" {
		t.Fatalf("weird member = %+v, %v", m, ok)
	}
	if len(v.Active()) != 0 {
		t.Errorf("a member with unreadable meta is active: %v", v.Active())
	}
	if !n.logs.contains("WARN", "unreadable metadata", "member=weird") {
		t.Error("bad metadata not logged")
	}
	// An update with good meta fixes it; a leave removes it.
	enc, _ := Meta{State: StateActive}.encode()
	d.NotifyUpdate(&memberlist.Node{Name: "weird", Addr: net.IPv4(10, 0, 0, 9), Port: 7946, Meta: enc})
	if got := n.View().Active(); len(got) != 1 || got[0].Name != "weird" {
		t.Fatalf("after update: Active = %v", got)
	}
	before := n.View().Version
	d.NotifyUpdate(&memberlist.Node{Name: "weird", Addr: net.IPv4(10, 0, 0, 9), Port: 7946, Meta: enc})
	if n.View().Version != before {
		t.Error("an update that changes nothing bumped the version")
	}
	d.NotifyLeave(&memberlist.Node{Name: "weird"})
	if _, ok := n.View().Get("weird"); ok {
		t.Error("member still present after leave")
	}
}

func TestParseSeed(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   string
		want seedAddr
		bad  bool
	}{
		{in: "10.0.0.1:7000", want: seedAddr{"10.0.0.1", 7000}},
		{in: "10.0.0.1", want: seedAddr{"10.0.0.1", DefaultSeedPort}},
		{in: "[::1]:7000", want: seedAddr{"::1", 7000}},
		{in: "::1", want: seedAddr{"::1", DefaultSeedPort}},
		{in: "chat-gossip.ns.svc.cluster.local", want: seedAddr{"chat-gossip.ns.svc.cluster.local", DefaultSeedPort}},
		{in: "chat-gossip:7001", want: seedAddr{"chat-gossip", 7001}},
		{in: "", bad: true},
		{in: "host:http", bad: true},
		{in: "host:0", bad: true},
		{in: "host:70000", bad: true},
		{in: ":7000", bad: true},
		{in: "a:b:c", bad: true},
	}
	for _, tc := range cases {
		got, err := parseSeed(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("parseSeed(%q) = %+v, want error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseSeed(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"no name", func(c *Config) { c.NodeName = "" }, "NodeName is required"},
		{"short key", func(c *Config) { c.Keys = [][]byte{[]byte("short")} }, "must be 16, 24 or 32 bytes"},
		{"repeated key", func(c *Config) { c.Keys = [][]byte{[]byte("0123456789abcdef"), []byte("0123456789abcdef")} }, "gossip key 2 repeats key 1"},
		{"profile", func(c *Config) { c.Profile = "wan" }, `unknown Profile "wan"`},
		{"seed", func(c *Config) { c.Seeds = []string{"ok:1", "host:http"} }, `invalid port "http"`},
		{"label", func(c *Config) { c.ClusterLabel = strings.Repeat("x", 256) }, "ClusterLabel is 256 bytes"},
		{"advertise", func(c *Config) { c.AdvertiseAddr = "pod.example" }, "AdvertiseAddr"},
		{"bind", func(c *Config) { c.BindAddr = "localhost" }, "BindAddr"},
		{"state", func(c *Config) { c.Meta.State = "busy" }, `invalid state "busy"`},
		{"rpc addr", func(c *Config) { c.Meta.RPCAddr = "no-port" }, "RPCAddr"},
		{"proto", func(c *Config) { c.Meta.Proto = -1 }, "protocol version"},
	}
	for _, tc := range cases {
		cfg := testConfig("x")
		tc.mutate(&cfg)
		m, err := New(cfg)
		if err == nil {
			_ = m.Shutdown()
			t.Errorf("%s: New succeeded", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not mention %q", tc.name, err, tc.want)
		}
	}
}

func TestLogBridge(t *testing.T) {
	t.Parallel()
	logs := &logRecorder{}
	var refutes atomic.Uint64
	l := newLogBridge(slog.New(&recHandler{r: logs}), &refutes)
	l.Printf("[DEBUG] memberlist: Stream connection from=127.0.0.1:5000")
	l.Printf("[INFO] memberlist: Marking n1 as failed, suspect timeout reached (0 peer confirmations)")
	l.Printf("[WARN] memberlist: Refuting a suspect message (from: n2)")
	l.Printf("[ERR] memberlist: discarding stream with unacceptable label \"prod\": from=127.0.0.1:5000")
	l.Printf("[ERR] memberlist: failed to receive: No installed keys could decrypt the message from=127.0.0.1:5000")
	l.Printf("[ERR] memberlist: failed to receive: encryption is configured but remote state is not encrypted from=127.0.0.1:5000")
	l.Printf("Err: Could not set the deadline: boom")
	l.Printf("[ERR] memberlist: failed to receive and remove the stream label header: EOF from=127.0.0.1:5001")

	for _, want := range [][]string{
		{"DEBUG", `"Stream connection from=127.0.0.1:5000"`, "origin=memberlist"},
		{"DEBUG", `"Marking n1 as failed`},
		{"WARN", `"Refuting a suspect message`},
		{"WARN", "unacceptable label", rejectedPeerHint},
		{"WARN", "No installed keys could decrypt", rejectedPeerHint},
		{"WARN", "remote state is not encrypted", rejectedPeerHint},
		{"WARN", `"Err: Could not set the deadline: boom"`},
	} {
		if !logs.contains(want...) {
			t.Errorf("no record with %q", want)
		}
	}
	if logs.contains("Refuting", "hint=") || logs.contains("label header", "hint=") {
		t.Error("hint attached to an unrelated warning")
	}
	if logs.contains("[DEBUG]") || logs.contains("memberlist: ") {
		t.Error("memberlist's level tag or prefix left in the message")
	}
	l.Printf("[WARN] memberlist: Refuting a dead message (from: n3)")
	if got := refutes.Load(); got != 2 {
		t.Errorf("counted %d refutations, want 2 (one suspect, one dead)", got)
	}
}

// TestRefuteMarkersInMemberlist pins the log text refutations are counted
// by (memberlist has no callback for them) to the memberlist this module
// builds with: an upgrade that rewords them fails here, not in production.
func TestRefuteMarkersInMemberlist(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/hashicorp/memberlist").Output()
	if err != nil {
		t.Fatalf("locate memberlist's source: %v", err)
	}
	src, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), "state.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, marker := range refuteMarkers {
		if !strings.Contains(string(src), "memberlist: "+marker) {
			t.Errorf("memberlist's state.go no longer logs %q", marker)
		}
	}
}

func TestViewHelpers(t *testing.T) {
	t.Parallel()
	v := View{Members: []Member{
		{Name: "a", Meta: Meta{State: StateActive}},
		{Name: "b", Meta: Meta{State: StateDraining}},
		{Name: "c", Meta: Meta{State: StateActive}},
		{Name: "d", Meta: Meta{State: StateJoining}},
	}}
	if got := v.Active(); len(got) != 2 || got[0].Name != "a" || got[1].Name != "c" {
		t.Errorf("Active = %v", got)
	}
	for _, name := range []string{"a", "b", "c", "d"} {
		if m, ok := v.Get(name); !ok || m.Name != name {
			t.Errorf("Get(%s) = %v, %v", name, m, ok)
		}
	}
	for _, name := range []string{"", "0", "bb", "e"} {
		if _, ok := v.Get(name); ok {
			t.Errorf("Get(%q) found a member", name)
		}
	}
	got := v.CountByState()
	if got[StateActive] != 2 || got[StateDraining] != 1 || got[StateJoining] != 1 || len(got) != 3 {
		t.Errorf("CountByState = %v", got)
	}
	if got := (View{}).CountByState(); len(got) != 3 || got[StateActive] != 0 {
		t.Errorf("empty CountByState = %v (every state must be present)", got)
	}
}

// TestReadyDoesNotWaitForeverForQuiet checks the settle cap: a view that
// keeps changing delays readiness by at most maxSettleFactor×SettleTime.
func TestReadyDoesNotWaitForeverForQuiet(t *testing.T) {
	t.Parallel()
	cfg := testConfig("busy")
	cfg.Bootstrap = true
	cfg.SettleTime = time.Second
	n := startNode(t, cfg)

	// Joined a margin short of the cap: the Ready call below must come
	// within the margin, so it is scaled (and kept below the cap).
	n.mu.Lock()
	n.joinedAt = time.Now().Add(-maxSettleFactor*cfg.SettleTime + min(testtime.Slack, maxSettleFactor*cfg.SettleTime/2))
	n.lastChange = time.Now() // churning
	n.mu.Unlock()
	if ok, reason := n.Ready(); ok || !strings.Contains(reason, "settling") {
		t.Fatalf("within the cap: Ready = %v, %q", ok, reason)
	}

	n.mu.Lock()
	n.joinedAt = time.Now().Add(-maxSettleFactor * cfg.SettleTime)
	n.lastChange = time.Now()
	n.mu.Unlock()
	if ok, reason := n.Ready(); !ok {
		t.Fatalf("past the cap: Ready = false, %q", reason)
	}
	n.logs.waitLog(t, testtime.Timeout, "WARN", "kept changing")
}
