package hooks_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ringchat/ringchat/chatd/client"
	"github.com/ringchat/ringchat/chatd/hooks"
	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// nodeFlags are a test node's flags before the hook flags: no way to
// authenticate of its own, so the connect hook (or a flag the test adds)
// decides.
func nodeFlags(extra ...string) []string {
	return append([]string{"--node-name", "hook-node", "--log-level", "error"}, extra...)
}

// connectWith says hello with the given upgrade headers.
func connectWith(t *testing.T, url string, header http.Header, hello protocol.ClientFrame) (*chatdtest.Client, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), chatdtest.Timeout)
	defer cancel()
	c, err := client.Connect(ctx, url, hello, client.Options{Header: header})
	if err != nil {
		return nil, err
	}
	return chatdtest.Adopt(t, c), nil
}

// refusedHello dials with header, says hello, and returns the close.
func refusedHello(t *testing.T, url string, header http.Header, hello protocol.ClientFrame) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), chatdtest.Timeout)
	defer cancel()
	conn, _, err := client.Dial(ctx, url, client.Options{Header: header})
	if err != nil {
		t.Fatal(err)
	}
	c := chatdtest.Adopt(t, conn)
	hello.Type = protocol.TypeHello
	c.Do(hello)
	return c.ExpectClose()
}

// TestConnectHookDecidesIdentity: with --hook-connect-url a hello without
// a token is the backend's to decide, from the upgrade request's cookie;
// its request carries the request's facts, signed with the hook secret;
// its deny closes with 4001 and its reason.
func TestConnectHookDecidesIdentity(t *testing.T) {
	t.Parallel()
	const secret = "the-hook-secret-shared-with-the-backend"
	be := startBackend(t, []byte(secret), func(hook string, req map[string]any, _ *http.Request) (int, any) {
		if cookie, _ := req["cookie"].(string); strings.Contains(cookie, "session=alice-42") {
			return http.StatusOK, allowUser("alice")
		}
		return http.StatusOK, deny("sign in first")
	})
	srv := chatdtest.StartWith(t, nodeFlags(), "--hook-connect-url", be.url("connect"),
		"--hook-secret-file", chatdtest.SecretFile(t, "hook-secret", secret+"\n"))
	origin := "http://" + srv.Addr
	c, err := connectWith(t, srv.URL, http.Header{"Cookie": {"theme=dark; session=alice-42"}, "Origin": {origin}},
		protocol.ClientFrame{Name: "ignored"})
	if err != nil {
		t.Fatalf("hello with the session cookie: %v", err)
	}
	if c.Welcome.User != "alice" || c.Welcome.Anonymous {
		t.Fatalf("welcome names %q (anonymous %v), want the backend's alice", c.Welcome.User, c.Welcome.Anonymous)
	}
	reqs := be.requests(hooks.HookConnect)
	if len(reqs) != 1 {
		t.Fatalf("connect hook called %d times, want 1", len(reqs))
	}
	got := reqs[0]
	if got["transport"] != "ws" || got["origin"] != origin || got["cookie"] != "theme=dark; session=alice-42" || got["name"] != "ignored" {
		t.Fatalf("connect hook request %v lacks the request's facts", got)
	}
	if remote, _ := got["remote_addr"].(string); !strings.HasPrefix(remote, "127.0.0.1:") {
		t.Fatalf("remote_addr %q, want the loopback peer", remote)
	}
	// The identity holds for what follows.
	c.Join("lobby")
	if a := c.Say("lobby", "c1", "hi"); a.Seq != 1 {
		t.Fatalf("ack %+v", a)
	}

	code, reason := refusedHello(t, srv.URL, http.Header{"Cookie": {"session=stolen"}}, protocol.ClientFrame{})
	if code != protocol.CloseAuthFailed || reason != "sign in first" {
		t.Fatalf("denied hello closed with %d %q, want 4001 with the backend's reason", code, reason)
	}
	srv.WaitMetric(t, `chatd_auth_failures_total{code="hook_denied"}`, 1)
	srv.WaitMetric(t, `chatd_hook_calls_total{hook="connect",result="deny"}`, 1)
}

// TestConnectHookAndJWT: a token hello on a node with JWT keys is checked
// as a JWT and never reaches the hook; a hello without a token goes to the
// hook; and with failure policy allow a dead backend leaves the node as
// without the hook (JWT still works, anonymous names only with
// --allow-anonymous).
func TestConnectHookAndJWT(t *testing.T) {
	t.Parallel()
	const jwtSecret = "jwt-secret-of-at-least-thirty-two-bytes!"
	be := startBackend(t, nil, func(string, map[string]any, *http.Request) (int, any) {
		return http.StatusOK, allowUser("cookie-user")
	})
	srv := chatdtest.StartWith(t, nodeFlags("--jwt-secret-file", chatdtest.SecretFile(t, "jwt", jwtSecret)), "--hook-connect-url", be.url("connect"))
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "token-user", "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(jwtSecret))
	if err != nil {
		t.Fatal(err)
	}
	c := chatdtest.ConnectHello(t, srv.URL, protocol.ClientFrame{Token: tok})
	if c.Welcome.User != "token-user" || len(be.requests(hooks.HookConnect)) != 0 {
		t.Fatalf("token hello: user %q, hook calls %d; want the token's user and no call", c.Welcome.User, len(be.requests(hooks.HookConnect)))
	}
	code, _ := refusedHello(t, srv.URL, nil, protocol.ClientFrame{Token: "not-a-jwt"})
	if code != protocol.CloseAuthFailed || len(be.requests(hooks.HookConnect)) != 0 {
		t.Fatalf("bad token: close %d, hook calls %d; want 4001 from the JWT check and no call", code, len(be.requests(hooks.HookConnect)))
	}
	c = chatdtest.ConnectHello(t, srv.URL, protocol.ClientFrame{})
	if c.Welcome.User != "cookie-user" {
		t.Fatalf("tokenless hello: user %q, want the hook's", c.Welcome.User)
	}

	// The backend gone, failure policy allow: as without the hook.
	be.srv.Close()
	down := chatdtest.StartWith(t, nodeFlags("--jwt-secret-file", chatdtest.SecretFile(t, "jwt", jwtSecret)),
		"--hook-connect-url", be.url("connect"), "--hook-connect-on-failure", "allow")
	if c := chatdtest.ConnectHello(t, down.URL, protocol.ClientFrame{Token: tok}); c.Welcome.User != "token-user" {
		t.Fatalf("token hello with the backend down: %q", c.Welcome.User)
	}
	code, reason := refusedHello(t, down.URL, nil, protocol.ClientFrame{Name: "ann"})
	if code != protocol.CloseAuthFailed || reason != "anonymous access disabled" {
		t.Fatalf("name hello, backend down, policy allow, no anonymous: %d %q", code, reason)
	}
	down.WaitMetric(t, `chatd_hook_calls_total{hook="connect",result="failed_allow"}`, 1)
	anon := chatdtest.StartWith(t, nodeFlags("--allow-anonymous"), "--hook-connect-url", be.url("connect"), "--hook-connect-on-failure", "allow")
	if c := chatdtest.Connect(t, anon.URL, "ann"); c.Welcome.User != "ann" || !c.Welcome.Anonymous {
		t.Fatalf("name hello, backend down, policy allow, anonymous allowed: %+v", c.Welcome)
	}
}

// TestConnectHookDownDeny: the backend down and failure policy deny (the
// default): the hello is closed with 1013, try again later.
func TestConnectHookDownDeny(t *testing.T) {
	t.Parallel()
	be := startBackend(t, nil, nil)
	be.srv.Close()
	srv := chatdtest.StartWith(t, nodeFlags("--allow-anonymous"), "--hook-connect-url", be.url("connect"))
	code, reason := refusedHello(t, srv.URL, nil, protocol.ClientFrame{Name: "ann"})
	if code != protocol.CloseTryAgainLater || !strings.Contains(reason, "unavailable") {
		t.Fatalf("backend down, policy deny: close %d %q, want 1013", code, reason)
	}
	srv.WaitMetric(t, `chatd_hook_calls_total{hook="connect",result="failed_deny"}`, 1)
	// One retry (--hook-retries 1 by default): two failed attempts.
	srv.WaitMetric(t, `chatd_hook_failures_total{hook="connect",reason="unreachable"}`, 2)
}

// TestJoinHook: the join hook sees fresh joins and resumes, and its deny
// reaches the client as forbidden with the backend's reason.
func TestJoinHook(t *testing.T) {
	t.Parallel()
	be := startBackend(t, nil, func(_ string, req map[string]any, _ *http.Request) (int, any) {
		if req["room"] == "staff" {
			return http.StatusOK, deny("staff only")
		}
		return http.StatusOK, map[string]string{"result": "allow"}
	})
	srv := chatdtest.Start(t, "--hook-join-url", be.url("join"))
	ann := chatdtest.Connect(t, srv.URL, "ann")
	j := ann.Join("lobby")
	ann.Say("lobby", "c1", "one")
	ann.Do(protocol.ClientFrame{Type: protocol.TypeJoin, ID: "j2", Room: "staff"})
	e := ann.ExpectError(protocol.CodeForbidden)
	if e.Message != "staff only" || e.ID != "j2" || e.Room != "staff" {
		t.Fatalf("denied join: %+v", e)
	}
	// A resume goes to the hook too, marked as one.
	bob := chatdtest.Connect(t, srv.URL, "bob")
	since := uint64(0)
	bob.Do(protocol.ClientFrame{Type: protocol.TypeJoin, ID: "r", Room: "lobby", Epoch: j.Epoch, Since: &since})
	bob.Expect(protocol.TypeJoined)
	if m := bob.NextMessage(); m.Text != "one" {
		t.Fatalf("resume replayed %q", m.Text)
	}
	reqs := be.requests(hooks.HookJoin)
	if len(reqs) != 3 {
		t.Fatalf("join hook calls %d, want 3", len(reqs))
	}
	if r := reqs[0]; r["user"] != "ann" || r["anonymous"] != true || r["resume"] != false || r["transport"] != "ws" {
		t.Fatalf("fresh join request %v", r)
	}
	if r := reqs[2]; r["user"] != "bob" || r["resume"] != true || r["since"] != float64(0) {
		t.Fatalf("resume request %v", r)
	}
	bob.Do(protocol.ClientFrame{Type: protocol.TypeJoin, ID: "r2", Room: "staff", Epoch: j.Epoch, Since: &since})
	bob.ExpectError(protocol.CodeForbidden)
}

// TestSendHook: allow, deny with a reason, and replace: the replacement is
// what the room gets and what history keeps; a replacement longer than
// --max-text-bytes is refused.
func TestSendHook(t *testing.T) {
	t.Parallel()
	const maxText = 64
	be := startBackend(t, nil, func(_ string, req map[string]any, _ *http.Request) (int, any) {
		text, _ := req["text"].(string)
		switch {
		case strings.Contains(text, "darn"):
			return http.StatusOK, map[string]string{"result": "replace", "text": strings.ReplaceAll(text, "darn", "****")}
		case strings.Contains(text, "spam"):
			return http.StatusOK, deny("no spam here")
		case strings.Contains(text, "grow"):
			return http.StatusOK, map[string]string{"result": "replace", "text": strings.Repeat("x", maxText+1)}
		}
		return http.StatusOK, map[string]string{"result": "allow"}
	})
	srv := chatdtest.Start(t, "--hook-send-url", be.url("send"), "--max-text-bytes", strconv.Itoa(maxText))
	ann := chatdtest.Connect(t, srv.URL, "ann")
	bob := chatdtest.Connect(t, srv.URL, "bob")
	ann.Join("lobby")
	bob.Join("lobby")
	ann.Say("lobby", "c1", "hello")
	if m := bob.NextMessage(); m.Text != "hello" {
		t.Fatalf("allowed message %q", m.Text)
	}
	ann.Say("lobby", "c2", "what a darn day")
	if m := bob.NextMessage(); m.Text != "what a **** day" || m.Seq != 2 {
		t.Fatalf("rewritten message %q seq %d", m.Text, m.Seq)
	}
	ann.Do(protocol.ClientFrame{Type: protocol.TypeSend, ID: "s3", Room: "lobby", CID: "c3", Text: "buy spam"})
	if e := ann.ExpectError(protocol.CodeForbidden); e.Message != "no spam here" || e.ID != "s3" || e.Room != "lobby" {
		t.Fatalf("denied send: %+v", e)
	}
	ann.Do(protocol.ClientFrame{Type: protocol.TypeSend, ID: "s4", Room: "lobby", CID: "c4", Text: "grow"})
	ann.ExpectError(protocol.CodeTextTooLong)
	// History keeps the replacement; the refused messages took no seq.
	bob.Do(protocol.ClientFrame{Type: protocol.TypeHistory, ID: "h", Room: "lobby"})
	var h protocol.HistoryPage
	bob.ExpectDecode(protocol.TypeHistory, &h)
	if len(h.Messages) != 2 || h.Messages[1].Text != "what a **** day" {
		t.Fatalf("history %+v", h.Messages)
	}
	reqs := be.requests(hooks.HookSend)
	if r := reqs[0]; r["user"] != "ann" || r["room"] != "lobby" || r["cid"] != "c1" || r["text"] != "hello" || r["transport"] != "ws" {
		t.Fatalf("send request %v", r)
	}
}

// TestHookTimeoutBothPolicies: a backend that does not answer within the
// hook's timeout fails the call: unavailable under deny, the message goes
// through unchanged under allow; either way only after the timeout, twice
// (the call is retried once: a send carries its cid, the idempotency key).
func TestHookTimeoutBothPolicies(t *testing.T) {
	t.Parallel()
	timeout := chatdtest.Timeout / 20
	be := startBackend(t, nil, func(_ string, _ map[string]any, r *http.Request) (int, any) { return hang(r) })
	for _, policy := range []string{"deny", "allow"} {
		t.Run(policy, func(t *testing.T) {
			t.Parallel()
			srv := chatdtest.Start(t, "--hook-send-url", be.url("send"), "--hook-send-timeout", timeout.String(), "--hook-send-on-failure", policy, "--hook-retries", "1")
			ann := chatdtest.Connect(t, srv.URL, "ann")
			ann.Join("lobby")
			start := time.Now()
			ann.Do(protocol.ClientFrame{Type: protocol.TypeSend, ID: "s", Room: "lobby", CID: "c1", Text: "hello"})
			if policy == "deny" {
				if e := ann.ExpectError(protocol.CodeUnavailable); !strings.Contains(e.Message, "send hook") {
					t.Fatalf("error %+v", e)
				}
			} else {
				ann.Expect(protocol.TypeAck)
			}
			if took := time.Since(start); took < 2*timeout {
				t.Fatalf("answered after %v, before two hook timeouts of %v", took, timeout)
			}
			srv.WaitMetric(t, `chatd_hook_failures_total{hook="send",reason="timeout"}`, 2)
			srv.WaitMetric(t, `chatd_hook_calls_total{hook="send",result="failed_`+policy+`"}`, 1)
		})
	}
}

// TestJoinHookDownBothPolicies: the backend down (connection refused):
// deny answers unavailable, allow lets the join through.
func TestJoinHookDownBothPolicies(t *testing.T) {
	t.Parallel()
	be := startBackend(t, nil, nil)
	be.srv.Close()
	deny := chatdtest.Start(t, "--hook-join-url", be.url("join"))
	ann := chatdtest.Connect(t, deny.URL, "ann")
	ann.Do(protocol.ClientFrame{Type: protocol.TypeJoin, ID: "j", Room: "lobby"})
	if e := ann.ExpectError(protocol.CodeUnavailable); e.ID != "j" || e.Room != "lobby" {
		t.Fatalf("error %+v", e)
	}
	allow := chatdtest.Start(t, "--hook-join-url", be.url("join"), "--hook-join-on-failure", "allow")
	bob := chatdtest.Connect(t, allow.URL, "bob")
	bob.Join("lobby")
	allow.WaitMetric(t, `chatd_hook_calls_total{hook="join",result="failed_allow"}`, 1)
}

// TestSlowHookDelaysOnlyItsConnection: while one connection's send waits
// for the backend, another connection's send in the same room is
// acknowledged: a hook call holds no room or hub lock.
func TestSlowHookDelaysOnlyItsConnection(t *testing.T) {
	t.Parallel()
	held := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	be := startBackend(t, nil, func(_ string, req map[string]any, r *http.Request) (int, any) {
		if req["text"] == "slow" {
			once.Do(func() { close(held) })
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		return http.StatusOK, map[string]string{"result": "allow"}
	})
	srv := chatdtest.Start(t, "--hook-send-url", be.url("send"), "--hook-send-timeout", chatdtest.Timeout.String())
	ann := chatdtest.Connect(t, srv.URL, "ann")
	bob := chatdtest.Connect(t, srv.URL, "bob")
	ann.Join("lobby")
	bob.Join("lobby")
	ann.Do(protocol.ClientFrame{Type: protocol.TypeSend, ID: "s", Room: "lobby", CID: "a1", Text: "slow"})
	<-held
	if a := bob.Say("lobby", "b1", "fast"); a.Seq != 1 {
		t.Fatalf("bob's ack %+v while ann's hook call is held", a)
	}
	close(release)
	var a protocol.Ack
	ann.ExpectDecode(protocol.TypeAck, &a)
	if a.Seq != 2 {
		t.Fatalf("ann's ack %+v", a)
	}
}

// TestBreakerOpensUnderLoad: a backend that stopped answering, many
// clients sending at once: after --hook-breaker-failures timeouts the
// breaker opens (its metric says so) and every client then gets
// unavailable at once, far below the hook timeout, without the backend
// being asked.
func TestBreakerOpensUnderLoad(t *testing.T) {
	t.Parallel()
	const clients, failures = 8, 3
	timeout := chatdtest.Timeout / 20
	be := startBackend(t, nil, func(_ string, _ map[string]any, r *http.Request) (int, any) { return hang(r) })
	srv := chatdtest.Start(t, "--hook-send-url", be.url("send"), "--hook-send-timeout", timeout.String(),
		"--hook-breaker-failures", strconv.Itoa(failures), "--hook-breaker-open", (chatdtest.Timeout * 10).String())
	conns := make([]*chatdtest.Client, clients)
	for i := range conns {
		conns[i] = chatdtest.Connect(t, srv.URL, "user"+strconv.Itoa(i))
		conns[i].Join("lobby")
	}
	// The first wave: every client's send waits for the timeout (or the
	// breaker, once open), and fails.
	sendAll := func(wave string) []time.Duration {
		took := make([]time.Duration, clients)
		var wg sync.WaitGroup
		for i, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				start := time.Now()
				if err := c.Send(protocol.ClientFrame{Type: protocol.TypeSend, ID: wave, Room: "lobby", CID: wave + strconv.Itoa(i), Text: "hi"}); err != nil {
					t.Errorf("send: %v", err)
					return
				}
				_ = c.SetReadDeadline(time.Now().Add(chatdtest.Timeout))
				for {
					f, err := c.Read()
					if err != nil {
						t.Errorf("read: %v", err)
						return
					}
					if f.Type == protocol.TypeError {
						var e protocol.Error
						_ = f.Decode(&e)
						if e.Code != protocol.CodeUnavailable {
							t.Errorf("error %+v, want unavailable", e)
						}
						took[i] = time.Since(start)
						return
					}
					if f.Type == protocol.TypeAck {
						t.Errorf("ack %s from a backend that never answers", f.Raw)
						return
					}
				}
			}()
		}
		wg.Wait()
		return took
	}
	sendAll("w1")
	srv.WaitMetric(t, `chatd_hook_breaker_state{hook="send"}`, 2)
	asked := len(be.requests(hooks.HookSend))
	for i, d := range sendAll("w2") {
		if d >= timeout {
			t.Errorf("client %d got unavailable after %v with the breaker open, not before the hook timeout %v", i, d, timeout)
		}
	}
	if n := len(be.requests(hooks.HookSend)); n != asked {
		t.Errorf("the backend was asked %d times more with the breaker open", n-asked)
	}
	if v := srv.Metric(t, `chatd_hook_failures_total{hook="send",reason="breaker_open"}`); v < clients {
		t.Errorf("breaker_open failures %v, want at least %d", v, clients)
	}
}

// TestConnectHookRemoteAddrBehindProxy: behind --trusted-proxies the
// connect hook's remote_addr is the client the proxy names, as the
// admission sees it; from an untrusted peer the header is ignored.
func TestConnectHookRemoteAddrBehindProxy(t *testing.T) {
	t.Parallel()
	be := startBackend(t, nil, func(string, map[string]any, *http.Request) (int, any) {
		return http.StatusOK, allowUser("u")
	})
	behind := chatdtest.StartWith(t, nodeFlags("--trusted-proxies", "127.0.0.1/32"), "--hook-connect-url", be.url("connect"))
	if _, err := connectWith(t, behind.URL, http.Header{"X-Forwarded-For": {"198.51.100.23"}}, protocol.ClientFrame{}); err != nil {
		t.Fatal(err)
	}
	direct := chatdtest.StartWith(t, nodeFlags(), "--hook-connect-url", be.url("connect"))
	if _, err := connectWith(t, direct.URL, http.Header{"X-Forwarded-For": {"198.51.100.23"}}, protocol.ClientFrame{}); err != nil {
		t.Fatal(err)
	}
	reqs := be.requests(hooks.HookConnect)
	if len(reqs) != 2 || reqs[0]["remote_addr"] != "198.51.100.23" {
		t.Fatalf("behind a trusted proxy: %v, want the forwarded client", reqs)
	}
	if remote, _ := reqs[1]["remote_addr"].(string); !strings.HasPrefix(remote, "127.0.0.1:") {
		t.Fatalf("from an untrusted peer: remote_addr %q, want the socket's peer", remote)
	}
}
