package server_test

// JWT key rotation under traffic: the key set file (--jwt-jwks-file) is
// rewritten while clients chat, the way docs/security.md tells an
// operator to rotate, and the delivery checker proves that no client
// holding a valid token is refused and no acknowledged message is lost.
// Tokens live about two seconds, so every client reconnects (close 4004,
// then a resume) several times per phase with a token of the issuer's
// current key: the key set is exercised by new connections all along.

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/ringchat/ringchat/chatd/client"
	"github.com/ringchat/ringchat/chatd/deliverycheck"
	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/internal/testtime"
	"github.com/ringchat/ringchat/chatd/protocol"
)

// rotationTokenLife is how long the test issuer's tokens live (exp is in
// whole seconds, so one lives between half of it and all of it).
const rotationTokenLife = 2 * time.Second

// signingKey is the key an issuer signs with, and the label the test
// counts its tokens under.
type signingKey struct {
	label  string
	method jwt.SigningMethod
	key    any
	kid    string // empty: the header names no key
}

// testIssuer mints short-lived tokens with its current key and remembers,
// per key, how many it minted and when the last of them expires, and the
// tokens still valid (for the holders' loop).
type testIssuer struct {
	t       *testing.T
	mu      sync.Mutex
	current signingKey
	minted  map[string]int
	lastExp map[string]time.Time
	issued  []issuedToken
}

// issuedToken is a token handed out, with the key that signed it.
type issuedToken struct {
	label, token string
	exp          time.Time
}

// valid returns the tokens handed out that still have at least left to
// live, oldest first.
func (is *testIssuer) valid(left time.Duration) []issuedToken {
	is.mu.Lock()
	defer is.mu.Unlock()
	now := time.Now()
	live := is.issued[:0]
	for _, tok := range is.issued {
		if tok.exp.After(now) {
			live = append(live, tok)
		}
	}
	is.issued = live
	var out []issuedToken
	for _, tok := range live {
		if tok.exp.Sub(now) >= left {
			out = append(out, tok)
		}
	}
	return out
}

func (is *testIssuer) use(k signingKey) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.current = k
}

// mint returns a token for sub with the current key.
func (is *testIssuer) mint(sub string) string {
	is.mu.Lock()
	k := is.current
	exp := time.Now().Add(rotationTokenLife).Truncate(time.Second)
	is.minted[k.label]++
	if exp.After(is.lastExp[k.label]) {
		is.lastExp[k.label] = exp
	}
	is.mu.Unlock()
	// Called by the checker's clients, not on the test's goroutine: an
	// error is reported, not fatal.
	tok := jwt.NewWithClaims(k.method, jwt.MapClaims{"sub": sub, "exp": exp.Unix()})
	if k.kid != "" {
		tok.Header["kid"] = k.kid
	}
	s, err := tok.SignedString(k.key)
	if err != nil {
		is.t.Errorf("sign a token for %s: %v", sub, err)
	}
	is.mu.Lock()
	is.issued = append(is.issued, issuedToken{label: k.label, token: s, exp: exp})
	is.mu.Unlock()
	return s
}

// holdersResult is what the holders' loop saw.
type holdersResult struct {
	hellos   map[string]int // welcomed, by key
	expired  int            // refused as expired: it ran out on the way
	refusals []string       // refused for any other reason
}

// holders says hello, again and again until stop closes, with every token
// the issuer handed out that is still valid, oldest first, as clients
// holding a token do when they reconnect: a key that left the set too
// early, or a set that lost a key, refuses one of them.
func holders(t *testing.T, url string, is *testIssuer, stop <-chan struct{}) <-chan holdersResult {
	out := make(chan holdersResult, 1)
	go func() {
		res := holdersResult{hellos: map[string]int{}}
		defer func() { out <- res }()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			// A token with less than this to live may expire on its way
			// through a loaded machine: that is not what is tested.
			toks := is.valid(rotationTokenLife / 4)
			if len(toks) == 0 {
				time.Sleep(10 * time.Millisecond) // pacing only: nothing to try yet
				continue
			}
			tok := toks[i%len(toks)]
			ctx, cancel := context.WithTimeout(context.Background(), chatdtest.Timeout)
			c, _, err := client.DialHello(ctx, url, protocol.ClientFrame{Token: tok.token}, client.Options{})
			cancel()
			switch code, reason, closed := client.CloseCode(err); {
			case err == nil:
				c.Close()
				res.hellos[tok.label]++
			case closed && code == protocol.CloseAuthFailed && reason == "token expired":
				res.expired++
			case closed:
				res.refusals = append(res.refusals, fmt.Sprintf("a %s token with %v left: close %d %q", tok.label, time.Until(tok.exp).Round(time.Millisecond), code, reason))
			default:
				res.refusals = append(res.refusals, fmt.Sprintf("a %s token: %v", tok.label, err))
			}
		}
	}()
	return out
}

// count returns how many tokens label's key signed.
func (is *testIssuer) count(label string) int {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.minted[label]
}

// expired reports whether every token label's key signed has expired.
func (is *testIssuer) expired(label string) (bool, string) {
	is.mu.Lock()
	defer is.mu.Unlock()
	left := time.Until(is.lastExp[label])
	return left < 0, fmt.Sprintf("the last %s token expires in %v", label, left.Round(time.Millisecond))
}

// probeHello says hello with token on a connection of its own and returns
// the 4001 reason, or "" when the node welcomed it.
func probeHello(t *testing.T, url, token string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), chatdtest.Timeout)
	defer cancel()
	c, _, err := client.DialHello(ctx, url, protocol.ClientFrame{Token: token}, client.Options{})
	if err == nil {
		c.Close()
		return ""
	}
	code, reason, ok := client.CloseCode(err)
	if !ok || code != protocol.CloseAuthFailed {
		t.Fatalf("probe hello: %v", err)
	}
	return reason
}

func TestJWTKeyRotationUnderTraffic(t *testing.T) {
	t.Parallel()
	oldKey, newKey := jwtRSAKey(t), jwtECKey(t)
	var (
		oldNoKID = signingKey{"old, no kid", jwt.SigningMethodRS256, oldKey, ""}
		oldKID   = signingKey{"old", jwt.SigningMethodRS256, oldKey, "2026-01"}
		newKID   = signingKey{"new", jwt.SigningMethodES256, newKey, "2026-02"}
	)
	jwksOld := jwksKey{oldKID.kid, &oldKey.PublicKey}
	jwksNew := jwksKey{newKID.kid, &newKey.PublicKey}
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	writeJWKS(t, jwks, jwksOld)
	const reload = 50 * time.Millisecond
	srv := chatdtest.StartWith(t, jwtBase, "--jwt-jwks-file", jwks, "--auth-reload-interval", reload.String(),
		"--jwt-leeway", "0s", "--rate", "1000", "--rate-burst", "1000")

	is := &testIssuer{t: t, current: oldNoKID, minted: map[string]int{}, lastExp: map[string]time.Time{}}
	const publishers, subscribers = 2, 2
	const actors = publishers + subscribers
	k := deliverycheck.NewMultiRoom(t, deliverycheck.MultiRoomConfig{
		Live:  func() []string { return []string{srv.URL} },
		Rooms: []string{"rot-a", "rot-b", "rot-c"}, Publishers: publishers, Subscribers: subscribers, Rate: 40,
		// One node, no gossip: this only bounds a connect and, with the
		// route timeout, a subscriber's silence.
		FailureDetection: rotationTokenLife, RouteTimeout: 10 * time.Second,
		Token: is.mint,
	})
	k.Start()
	stopHolders := make(chan struct{})
	held := holders(t, srv.URL, is, stopHolders)
	// Every phase lasts until each client has reconnected with a token of
	// the phase's key: a few token lives.
	phase := testtime.Bound(4*rotationTokenLife) + chatdtest.Timeout
	waitMinted := func(label string, n int) {
		t.Helper()
		chatdtest.Eventually(t, phase, fmt.Sprintf("%d tokens of the %s key handed out", n, label), func() (bool, string) {
			return is.count(label) >= n, fmt.Sprintf("%d so far", is.count(label))
		})
	}
	waitExpired := func(label string) {
		t.Helper()
		chatdtest.Eventually(t, phase, "every "+label+" token expired", func() (bool, string) { return is.expired(label) })
	}
	progress := func(what string) {
		t.Helper()
		if err := k.WaitProgress(nil, 5); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	probes := 0 // hellos refused on purpose, to see the node's key set
	waitProbe := func(what, token, want string) {
		t.Helper()
		chatdtest.Eventually(t, phase, what, func() (bool, string) {
			got := probeHello(t, srv.URL, token)
			if got != "" {
				probes++
			}
			return got == want, fmt.Sprintf("hello answered %q", got)
		})
	}

	// 1. One key and tokens without a kid: accepted, since the set has
	// exactly one key.
	progress("one key, no kid")
	waitMinted(oldNoKID.label, 2*actors)

	// 2. The issuer names the kid; once no token without one is left, a
	// second key may join the set.
	is.use(oldKID)
	waitMinted(oldKID.label, actors)
	waitExpired(oldNoKID.label)
	progress("old key with its kid")
	writeJWKS(t, jwks, jwksOld, jwksNew)
	waitProbe("the new key in the node's set", is.signWith(newKID, "probe"), "")

	// 3. The issuer signs with the new key; the old one stays in the set
	// until every token it signed has expired.
	is.use(newKID)
	waitMinted(newKID.label, 2*actors)
	waitExpired(oldKID.label)
	progress("new key")

	// 4. The old key leaves the set: its tokens are refused, and clients
	// keep reconnecting with the new one.
	writeJWKS(t, jwks, jwksNew)
	waitProbe("the old key gone from the node's set", is.signWith(oldKID, "probe"), "token key unknown")
	waitMinted(newKID.label, is.count(newKID.label)+actors)
	progress("old key removed")

	close(stopHolders)
	h := <-held
	for _, r := range h.refusals {
		t.Errorf("holders' loop: %s", r)
	}
	for _, label := range []string{oldNoKID.label, oldKID.label, newKID.label} {
		if h.hellos[label] == 0 {
			t.Errorf("holders' loop: no hello with a %s token (welcomed: %v)", label, h.hellos)
		}
	}
	rep := k.Verify("jwt key rotation")
	// Expired tokens closed connections (4004) and the clients came back:
	// the rotation was crossed by new connections, not by long-lived ones.
	if n := srv.Metric(t, `chatd_connection_closes_total{code="4004"}`); n < actors {
		t.Errorf("%v connections closed for expiry, want at least %d: the clients did not reconnect during the rotation", n, actors)
	}
	// The only refused hellos are the probes of keys not (or no longer) in
	// the set.
	srv.WaitMetric(t, `chatd_connection_closes_total{code="4001"}`, float64(probes+h.expired+len(h.refusals)))
	t.Logf("rotation under traffic: %d messages acknowledged, tokens handed out %v, %d probes refused; holders welcomed %v, %d ran out on the way",
		rep.Acked, is.minted, probes, h.hellos, h.expired)
}

// signWith mints a token for sub with k, outside the issuer's counts (for
// probes).
func (is *testIssuer) signWith(k signingKey, sub string) string {
	return signWithKID(is.t, k.method, k.key, k.kid, jwt.MapClaims{"sub": sub, "exp": time.Now().Add(time.Hour).Unix()})
}
