package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/api"
	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/rendezvous"
)

const (
	keyA = "api-key-aaaaaaaaaaaaaaaaaaaa"
	keyB = "api-key-bbbbbbbbbbbbbbbbbbbb"
)

// writeKeys replaces the key file through a rename, as a Secret volume's
// update does.
func writeKeys(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path+".new", []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
}

// keyFile writes a key file holding keys and returns its path.
func keyFile(t *testing.T, keys ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "api-keys")
	writeKeys(t, path, "# server API keys\n"+strings.Join(keys, "\n")+"\n")
	return path
}

// startAPI starts a node serving the API with keyA, and returns it.
func startAPI(t *testing.T, args ...string) *chatdtest.Server {
	t.Helper()
	return chatdtest.Start(t, append([]string{"--api-key-file", keyFile(t, keyA)}, args...)...)
}

// response is one API answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

// decode unmarshals the body into v, failing the test when it does not.
func (r response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %q: %v", r.body, err)
	}
}

// apiError is the error of an error response.
func (r response) apiError(t *testing.T) api.Error {
	t.Helper()
	var body struct {
		Error *api.Error `json:"error"`
	}
	r.decode(t, &body)
	if body.Error == nil || body.Error.Code == "" || body.Error.Message == "" {
		t.Fatalf("status %d: body %q is not the API's error shape", r.status, r.body)
	}
	return *body.Error
}

// call sends one request to base+path with key (none when empty).
func call(t *testing.T, method, base, path, key string, body []byte) response {
	t.Helper()
	req, err := http.NewRequest(method, base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func adminBase(s *chatdtest.Server) string { return "http://" + s.AdminAddr }

func messagesPath(room string) string {
	return "/api/v1/rooms/" + url.PathEscape(room) + "/messages"
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// publish posts req to room through s and expects 200.
func publish(t *testing.T, s *chatdtest.Server, room string, req api.PublishRequest) api.Published {
	t.Helper()
	r := call(t, http.MethodPost, adminBase(s), messagesPath(room), keyA, mustJSON(t, req))
	if r.status != http.StatusOK {
		t.Fatalf("publish to %s: %d %s", room, r.status, r.body)
	}
	var p api.Published
	r.decode(t, &p)
	return p
}

// A message published through the API reaches a real WebSocket client
// subscribed to the room, with the sender, text and position the API
// answered.
func TestPublishReachesSubscribers(t *testing.T) {
	srv := startAPI(t)
	bob := chatdtest.Connect(t, srv.URL, "bob")
	joined := bob.Join("lobby/general")

	got := publish(t, srv, "lobby/general", api.PublishRequest{User: "backend-bot", Text: "deploy finished"})
	if got.Room != "lobby/general" || got.Seq != joined.Head+1 || got.Epoch != joined.Epoch || got.Duplicate || got.TS == 0 {
		t.Fatalf("publish answered %+v; joined %+v", got, joined)
	}
	m := bob.NextMessage()
	if m.Room != "lobby/general" || m.Seq != got.Seq || m.From != "backend-bot" || m.Text != "deploy finished" || m.TS != got.TS {
		t.Fatalf("bob got %+v, want seq %d from backend-bot", m, got.Seq)
	}
	if m.MID != got.Epoch+"-"+strconv.FormatUint(got.Seq, 10) {
		t.Fatalf("mid %q does not match epoch %q and seq %d", m.MID, got.Epoch, got.Seq)
	}

	// Without a user, the system sender.
	sys := publish(t, srv, "lobby/general", api.PublishRequest{Text: "maintenance at 18:00"})
	if m := bob.NextMessage(); m.From != api.SystemSender || m.Seq != sys.Seq {
		t.Fatalf("bob got %+v, want seq %d from %s", m, sys.Seq, api.SystemSender)
	}
}

// A retry with the same idempotency key returns the first call's seq and
// stores nothing new; another key, or none, stores a new message.
func TestIdempotentRetry(t *testing.T) {
	srv := startAPI(t)
	bob := chatdtest.Connect(t, srv.URL, "bob")
	bob.Join("orders")

	req := api.PublishRequest{User: "shop", Text: "order 42 shipped", IdempotencyKey: "order-42-shipped"}
	first := publish(t, srv, "orders", req)
	again := publish(t, srv, "orders", req)
	if first.Duplicate || !again.Duplicate || again.Seq != first.Seq || again.Epoch != first.Epoch {
		t.Fatalf("first %+v, retry %+v: want the same seq, the retry a duplicate", first, again)
	}
	// Another sender's use of the key is its own message.
	other := publish(t, srv, "orders", api.PublishRequest{User: "warehouse", Text: "order 42 shipped", IdempotencyKey: "order-42-shipped"})
	noKey1 := publish(t, srv, "orders", api.PublishRequest{User: "shop", Text: "no key"})
	noKey2 := publish(t, srv, "orders", api.PublishRequest{User: "shop", Text: "no key"})
	if other.Duplicate || other.Seq != first.Seq+1 || noKey1.Seq != first.Seq+2 || noKey2.Seq != first.Seq+3 || noKey2.Duplicate {
		t.Fatalf("first %d, other sender %+v, no key %+v %+v", first.Seq, other, noKey1, noKey2)
	}
	for _, want := range []uint64{first.Seq, other.Seq, noKey1.Seq, noKey2.Seq} {
		if m := bob.NextMessage(); m.Seq != want {
			t.Fatalf("bob got seq %d, want %d (the retry must not be delivered)", m.Seq, want)
		}
	}
	var h api.HistoryResponse
	call(t, http.MethodGet, adminBase(srv), messagesPath("orders"), keyA, nil).decode(t, &h)
	if len(h.Messages) != 4 || h.Messages[0].CID != api.CIDPrefix+"order-42-shipped" {
		t.Fatalf("history %+v: want 4 messages, the first with cid %q", h, api.CIDPrefix+"order-42-shipped")
	}
}

// In a three-node cluster, a publish through node A for a room node C owns
// is stored by C and reaches a client on node B, and its retry through B
// is answered the same seq; A's history and a broadcast over rooms of
// every owner work the same way.
func TestClusterPublishThroughAnotherNode(t *testing.T) {
	keys := keyFile(t, keyA)
	c := chatdtest.StartCluster(t, 3, "--api-key-file", keys)
	a, b, cNode := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	names := c.LiveNames()
	room := roomOwnedBy(names, cNode.Name)

	bob := chatdtest.Connect(t, b.URL, "bob")
	joined := bob.Join(room)
	req := api.PublishRequest{User: "backend", Text: "through A, owned by C", IdempotencyKey: "cross-node"}
	got := publish(t, a.Server, room, req)
	if got.Seq != joined.Head+1 || got.Epoch != joined.Epoch {
		t.Fatalf("publish %+v, joined %+v", got, joined)
	}
	// A backend behind a load balancer retries through another node: the
	// owner's dedupe answers the same seq.
	if again := publish(t, b.Server, room, req); again.Seq != got.Seq || again.Epoch != got.Epoch || again.TS != got.TS || !again.Duplicate {
		t.Fatalf("retry through B: %+v, first through A: %+v", again, got)
	}
	if m := bob.NextMessage(); m.Seq != got.Seq || m.Text != "through A, owned by C" {
		t.Fatalf("bob on B got %+v", m)
	}
	// C owns the room: its /admin/rooms lists it.
	if r := call(t, http.MethodGet, adminBase(cNode.Server), "/admin/rooms", "", nil); !bytes.Contains(r.body, []byte(strconv.Quote(room))) {
		t.Fatalf("%s does not own %s: %s", cNode.Name, room, r.body)
	}
	var h api.HistoryResponse
	call(t, http.MethodGet, adminBase(a.Server), messagesPath(room), keyA, nil).decode(t, &h)
	if len(h.Messages) != 1 || h.Messages[0].Seq != got.Seq || h.Epoch != got.Epoch {
		t.Fatalf("history through A: %+v", h)
	}

	rooms := []string{roomOwnedBy(names, a.Name), roomOwnedBy(names, b.Name), room}
	r := call(t, http.MethodPost, adminBase(a.Server), "/api/v1/broadcast", keyA, mustJSON(t, api.BroadcastRequest{Rooms: rooms, Text: "to everyone", IdempotencyKey: "notice-1"}))
	var br api.BroadcastResponse
	r.decode(t, &br)
	if r.status != http.StatusOK || len(br.Results) != 3 {
		t.Fatalf("broadcast: %d %s", r.status, r.body)
	}
	for i, res := range br.Results {
		if res.Room != rooms[i] || res.Error != nil || res.Seq == 0 || res.Epoch == "" {
			t.Fatalf("broadcast result %d: %+v", i, res)
		}
	}
	if m := bob.NextMessage(); m.Seq != got.Seq+1 || m.From != api.SystemSender || m.Text != "to everyone" {
		t.Fatalf("bob got %+v from the broadcast", m)
	}
}

// roomOwnedBy finds a room name that want owns among nodes.
func roomOwnedBy(nodes []string, want string) string {
	for i := 0; ; i++ {
		room := fmt.Sprint("api-room-", i)
		if rendezvous.Owner(room, nodes) == want {
			return room
		}
	}
}

// History pages walk back from the newest message with before and limit.
func TestHistoryPages(t *testing.T) {
	srv := startAPI(t)
	for i := 1; i <= 7; i++ {
		publish(t, srv, "log", api.PublishRequest{User: "ann", Text: "m" + strconv.Itoa(i)})
	}
	page := func(query string) api.HistoryResponse {
		t.Helper()
		r := call(t, http.MethodGet, adminBase(srv), messagesPath("log")+query, keyA, nil)
		if r.status != http.StatusOK {
			t.Fatalf("history%s: %d %s", query, r.status, r.body)
		}
		var h api.HistoryResponse
		r.decode(t, &h)
		return h
	}
	seqs := func(h api.HistoryResponse) string {
		var s []string
		for _, m := range h.Messages {
			s = append(s, strconv.FormatUint(m.Seq, 10)+":"+m.Text)
		}
		return strings.Join(s, ",")
	}
	for _, tc := range []struct {
		query, want string
		more        bool
	}{
		{"?limit=3", "5:m5,6:m6,7:m7", true},
		{"?before=5&limit=3", "2:m2,3:m3,4:m4", true},
		{"?before=2&limit=3", "1:m1", false},
		{"", "1:m1,2:m2,3:m3,4:m4,5:m5,6:m6,7:m7", false},
		{"?before=1", "", false},
	} {
		h := page(tc.query)
		if got := seqs(h); got != tc.want || h.More != tc.more || h.Head != 7 || h.Oldest != 1 || h.Room != "log" || h.Epoch == "" {
			t.Errorf("history%s: %q more=%v head=%d oldest=%d; want %q more=%v", tc.query, got, h.More, h.Head, h.Oldest, tc.want, tc.more)
		}
	}
	// A room nobody wrote to is an empty page, not an error.
	empty := call(t, http.MethodGet, adminBase(srv), messagesPath("nobody-here"), keyA, nil)
	var h api.HistoryResponse
	empty.decode(t, &h)
	if empty.status != http.StatusOK || len(h.Messages) != 0 || h.Messages == nil || h.More {
		t.Fatalf("empty room: %d %s", empty.status, empty.body)
	}
}

// Every bad input gets its status and the one error shape, and stores
// nothing.
func TestBadInput(t *testing.T) {
	srv := startAPI(t, "--max-text-bytes", "100")
	base := adminBase(srv)
	long := strings.Repeat("x", 101)
	for _, tc := range []struct {
		name, method, path, key string
		body                    string
		status                  int
		code, field             string
	}{
		{"no key", "POST", messagesPath("r"), "", `{"text":"hi"}`, 401, api.CodeUnauthorized, ""},
		{"wrong key", "POST", messagesPath("r"), keyB, `{"text":"hi"}`, 401, api.CodeUnauthorized, ""},
		{"key prefix", "GET", messagesPath("r"), keyA[:10], "", 401, api.CodeUnauthorized, ""},
		{"unknown path without a key", "GET", "/api/v1/nope", "", "", 401, api.CodeUnauthorized, ""},
		{"unknown path", "GET", "/api/v1/nope", keyA, "", 404, api.CodeNotFound, ""},
		{"wrong method", "DELETE", messagesPath("r"), keyA, "", 405, api.CodeMethodNotAllowed, ""},
		{"broadcast GET", "GET", "/api/v1/broadcast", keyA, "", 405, api.CodeMethodNotAllowed, ""},
		{"too large", "POST", messagesPath("r"), keyA, `{"text":"` + strings.Repeat("y", 6*100+1024) + `"}`, 413, api.CodeBodyTooLarge, ""},
		{"not JSON", "POST", messagesPath("r"), keyA, `text=hi`, 400, api.CodeBadJSON, ""},
		{"empty body", "POST", messagesPath("r"), keyA, ``, 400, api.CodeBadJSON, ""},
		{"two objects", "POST", messagesPath("r"), keyA, `{"text":"a"}{"text":"b"}`, 400, api.CodeBadJSON, ""},
		{"unknown member", "POST", messagesPath("r"), keyA, `{"text":"hi","cid":"x"}`, 400, api.CodeBadJSON, "cid"},
		{"wrong type", "POST", messagesPath("r"), keyA, `{"text":5}`, 400, api.CodeBadJSON, "text"},
		{"bad room", "POST", messagesPath("no spaces"), keyA, `{"text":"hi"}`, 400, api.CodeInvalidRoom, "room"},
		{"long room", "POST", messagesPath(strings.Repeat("r", 65)), keyA, `{"text":"hi"}`, 400, api.CodeInvalidRoom, "room"},
		{"no text", "POST", messagesPath("r"), keyA, `{"user":"ann"}`, 400, api.CodeBadRequest, "text"},
		{"text too long", "POST", messagesPath("r"), keyA, `{"text":"` + long + `"}`, 400, api.CodeTextTooLong, "text"},
		{"bad user", "POST", messagesPath("r"), keyA, `{"text":"hi","user":"a\u0007b"}`, 400, api.CodeBadRequest, "user"},
		{"long user", "POST", messagesPath("r"), keyA, `{"text":"hi","user":"` + strings.Repeat("u", 65) + `"}`, 400, api.CodeBadRequest, "user"},
		{"long key", "POST", messagesPath("r"), keyA, `{"text":"hi","idempotency_key":"` + strings.Repeat("k", api.MaxIdempotencyKeyLen+1) + `"}`, 400, api.CodeBadRequest, "idempotency_key"},
		{"key with space", "POST", messagesPath("r"), keyA, `{"text":"hi","idempotency_key":"a b"}`, 400, api.CodeBadRequest, "idempotency_key"},
		{"broadcast no rooms", "POST", "/api/v1/broadcast", keyA, `{"rooms":[],"text":"hi"}`, 400, api.CodeBadRequest, "rooms"},
		{"broadcast bad room", "POST", "/api/v1/broadcast", keyA, `{"rooms":["ok","not ok"],"text":"hi"}`, 400, api.CodeInvalidRoom, "rooms[1]"},
		{"broadcast twice", "POST", "/api/v1/broadcast", keyA, `{"rooms":["r","r"],"text":"hi"}`, 400, api.CodeBadRequest, "rooms[1]"},
		{"broadcast long text", "POST", "/api/v1/broadcast", keyA, `{"rooms":["r"],"text":"` + long + `"}`, 400, api.CodeTextTooLong, "text"},
		{"history bad limit", "GET", messagesPath("r") + "?limit=201", keyA, "", 400, api.CodeBadRequest, "limit"},
		{"history zero limit", "GET", messagesPath("r") + "?limit=0", keyA, "", 400, api.CodeBadRequest, "limit"},
		{"history bad before", "GET", messagesPath("r") + "?before=-1", keyA, "", 400, api.CodeBadRequest, "before"},
		{"history huge before", "GET", messagesPath("r") + "?before=9007199254740992", keyA, "", 400, api.CodeBadRequest, "before"},
		{"history unknown parameter", "GET", messagesPath("r") + "?since=3", keyA, "", 400, api.CodeBadRequest, "since"},
		{"history bad room", "GET", messagesPath("a*b"), keyA, "", 400, api.CodeInvalidRoom, "room"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var body []byte
			if tc.body != "" || tc.method == "POST" {
				body = []byte(tc.body)
			}
			r := call(t, tc.method, base, tc.path, tc.key, body)
			if r.status != tc.status {
				t.Fatalf("status %d (%s), want %d", r.status, r.body, tc.status)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q", ct)
			}
			e := r.apiError(t)
			if e.Code != tc.code || e.Field != tc.field {
				t.Fatalf("error %+v, want code %q field %q", e, tc.code, tc.field)
			}
			if tc.status == 401 && r.header.Get("WWW-Authenticate") != `Bearer realm="chatd api"` {
				t.Fatalf("401 without WWW-Authenticate: %v", r.header)
			}
			if tc.status == 405 && r.header.Get("Allow") == "" {
				t.Fatal("405 without Allow")
			}
		})
	}
	// Nothing of the above was stored.
	var h api.HistoryResponse
	call(t, http.MethodGet, base, messagesPath("r"), keyA, nil).decode(t, &h)
	if len(h.Messages) != 0 {
		t.Fatalf("refused requests stored %d messages", len(h.Messages))
	}
	// The key never shows in an answer.
	if r := call(t, http.MethodGet, base, "/api/v1/nope", keyB, nil); bytes.Contains(r.body, []byte(keyB)) {
		t.Fatalf("the answer echoes the key: %s", r.body)
	}
	// Requests are counted by route and status.
	if n := srv.Metric(t, `chatd_api_requests_total{code="400",route="/api/v1/rooms/{room}/messages"}`); n < 10 {
		t.Fatalf("chatd_api_requests_total for 400 on messages: %v", n)
	}
	if n := srv.Metric(t, `chatd_api_requests_total{code="401",route="other"}`); n != 2 {
		t.Fatalf("chatd_api_requests_total for 401 on other routes: %v, want 2", n)
	}
}

// A node that sees no majority of the expected cluster refuses new
// messages: the API answers 503 unavailable with Retry-After, within
// --route-timeout.
func TestOwnerUnavailable(t *testing.T) {
	srv := startAPI(t, "--expected-nodes", "3", "--route-timeout", "300ms")
	start := time.Now()
	r := call(t, http.MethodPost, adminBase(srv), messagesPath("r"), keyA, []byte(`{"text":"hi","idempotency_key":"k1"}`))
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") != strconv.Itoa(api.RetryAfter) {
		t.Fatalf("publish without quorum: %d %v %s", r.status, r.header, r.body)
	}
	if e := r.apiError(t); e.Code != api.CodeUnavailable {
		t.Fatalf("error %+v", e)
	}
	if took := time.Since(start); took > chatdtest.Timeout {
		t.Fatalf("took %v", took)
	}
	br := call(t, http.MethodPost, adminBase(srv), "/api/v1/broadcast", keyA, []byte(`{"rooms":["a","b"],"text":"hi"}`))
	var resp api.BroadcastResponse
	br.decode(t, &resp)
	if br.status != http.StatusOK || len(resp.Results) != 2 || resp.Results[0].Error == nil || resp.Results[0].Error.Code != api.CodeUnavailable || resp.Results[1].Error == nil {
		t.Fatalf("broadcast without quorum: %d %s", br.status, br.body)
	}
}

// The API lives on the admin listener only, and only with --api-key-file.
func TestServedOnlyOnTheAdminListenerWithKeys(t *testing.T) {
	srv := startAPI(t)
	for _, key := range []string{"", keyA} {
		// The client port takes no POST but Socket.IO's (405), and has
		// no such page (404).
		if r := call(t, http.MethodPost, "http://"+srv.Addr, messagesPath("r"), key, []byte(`{"text":"hi"}`)); r.status != http.StatusMethodNotAllowed {
			t.Fatalf("client port POST with key %q: %d %s, want 405", key, r.status, r.body)
		}
		if r := call(t, http.MethodGet, "http://"+srv.Addr, messagesPath("r"), key, nil); r.status != http.StatusNotFound {
			t.Fatalf("client port GET with key %q: %d %s, want 404", key, r.status, r.body)
		}
	}
	var h api.HistoryResponse
	call(t, http.MethodGet, adminBase(srv), messagesPath("r"), keyA, nil).decode(t, &h)
	if len(h.Messages) != 0 {
		t.Fatalf("the client port stored %d messages", len(h.Messages))
	}
	// The admin routes are still there.
	if r := call(t, http.MethodGet, adminBase(srv), "/admin/cluster", "", nil); r.status != http.StatusOK {
		t.Fatalf("/admin/cluster next to the API: %d", r.status)
	}
	plain := chatdtest.Start(t)
	for _, key := range []string{"", keyA} {
		if r := call(t, http.MethodPost, adminBase(plain), messagesPath("r"), key, []byte(`{"text":"hi"}`)); r.status != http.StatusNotFound {
			t.Fatalf("admin listener without --api-key-file, key %q: %d %s, want 404", key, r.status, r.body)
		}
	}
}

// Keys rotate without a restart: the file is re-read every
// --auth-reload-interval, so the new key is accepted and the old one
// refused from the same reload on.
func TestKeyRotation(t *testing.T) {
	const interval = 50 * time.Millisecond
	keys := keyFile(t, keyA)
	srv := chatdtest.Start(t, "--api-key-file", keys, "--auth-reload-interval", interval.String())
	status := func(key string) int {
		return call(t, http.MethodGet, adminBase(srv), messagesPath("r"), key, nil).status
	}
	if a, b := status(keyA), status(keyB); a != http.StatusOK || b != http.StatusUnauthorized {
		t.Fatalf("before: A %d, B %d", a, b)
	}
	writeKeys(t, keys, keyB+"\n")
	// The reload is the event: the first request an interval after the
	// last read of the file reads it again. Polling is bounded by a few
	// intervals, scaled like every wait of the tests.
	chatdtest.Eventually(t, chatdtest.Timeout+20*interval, "key B accepted", func() (bool, string) {
		s := status(keyB)
		return s == http.StatusOK, strconv.Itoa(s)
	})
	if s := status(keyA); s != http.StatusUnauthorized {
		t.Fatalf("key A after the reload that took B: %d, want 401", s)
	}
}
