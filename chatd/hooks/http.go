package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/sony/gobreaker/v2"

	"github.com/ringchat/ringchat/chatd/metrics"
	"github.com/ringchat/ringchat/chatd/reqsign"
	"github.com/ringchat/ringchat/chatd/version"
)

// Policy is what a hook decides when the backend fails: it is down,
// times out, answers something else than a 2xx with a valid reply, or the
// hook's circuit breaker is open.
type Policy string

// Failure policies.
const (
	// Deny refuses (the client gets unavailable, or close 1013 for a
	// connect): the safe default, nothing passes unchecked.
	Deny Policy = "deny"
	// Allow lets the request through as if the hook were not configured.
	Allow Policy = "allow"
)

// Endpoint configures one hook.
type Endpoint struct {
	// URL receives the hook's POSTs; empty turns the hook off.
	URL string
	// Timeout bounds one attempt (the request and its reply).
	Timeout time.Duration
	// OnFailure is the failure policy.
	OnFailure Policy
}

// Options configures the hooks of a node.
type Options struct {
	Connect, Join, Send Endpoint
	// Retries is how many times a failed connect or join call (and a send
	// call that carries a cid) is tried again. An answer (allow, deny) is
	// never retried; neither is a 4xx, a bad reply or an open breaker.
	Retries int
	// BreakerFailures consecutive failed attempts open a hook's breaker;
	// for BreakerOpen then every call fails at once (the failure policy
	// decides without asking the backend), after which one call at a time
	// probes the backend until one succeeds.
	BreakerFailures int
	BreakerOpen     time.Duration
	// Secret, when set, signs every request (X-Ringchat-Signature), so the
	// backend can tell chatd's calls from forgeries.
	Secret []byte
}

// maxReplyBytes bounds a reply read from the backend: a replacement text
// is at most a message's size, far below this.
const maxReplyBytes = 1 << 20

// New builds the configured hooks; hooks whose URL is empty stay nil.
func New(o Options, m *metrics.Metrics, log *slog.Logger) *Set {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// Every call is small and many run at once (one per connection that
	// is connecting, joining or sending): keep enough idle connections to
	// the backend that a busy node does not dial one per call.
	tr.MaxIdleConnsPerHost = 256
	client := &http.Client{Transport: tr}
	set := &Set{closeIdle: tr.CloseIdleConnections}
	var hm *metrics.Hooks
	mk := func(name string, ep Endpoint) *Hook {
		if ep.URL == "" {
			return nil
		}
		if hm == nil {
			hm = metrics.NewHooks(m)
		}
		return newHook(name, ep, o, client, hm, log)
	}
	if h := mk(HookConnect, o.Connect); h != nil {
		set.Connect = h
	}
	if h := mk(HookJoin, o.Join); h != nil {
		set.Join = h
	}
	if h := mk(HookSend, o.Send); h != nil {
		set.Send = h
	}
	return set
}

// Hook is one hook's HTTP client: it implements Connector, Joiner and
// Sender, of which its name says which one it is used as.
type Hook struct {
	name    string
	ep      Endpoint
	retries int
	secret  []byte
	client  *http.Client
	breaker *gobreaker.CircuitBreaker[Reply]
	metrics *metrics.Hooks
	log     *slog.Logger
}

func newHook(name string, ep Endpoint, o Options, client *http.Client, hm *metrics.Hooks, log *slog.Logger) *Hook {
	h := &Hook{name: name, ep: ep, retries: o.Retries, secret: o.Secret, client: client, metrics: hm, log: log}
	failures := uint32(max(o.BreakerFailures, 1))
	h.breaker = gobreaker.NewCircuitBreaker[Reply](gobreaker.Settings{
		Name:        name,
		MaxRequests: 1,
		Timeout:     o.BreakerOpen,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			hm.BreakerState.WithLabelValues(name).Set(float64(to))
			level := slog.LevelInfo
			if to == gobreaker.StateOpen {
				level = slog.LevelWarn
			}
			log.Log(context.Background(), level, "hook circuit breaker changed state", "hook", name, "from", from.String(), "to", to.String())
		},
	})
	hm.BreakerState.WithLabelValues(name).Set(float64(gobreaker.StateClosed))
	for _, r := range []string{ResultAllow, ResultDeny, "failed_allow", "failed_deny"} {
		hm.Calls.WithLabelValues(name, r)
	}
	return h
}

// Connect implements Connector.
func (h *Hook) Connect(ctx context.Context, req ConnectRequest) Verdict {
	req.Hook = HookConnect
	return h.call(ctx, req, true, "")
}

// Join implements Joiner.
func (h *Hook) Join(ctx context.Context, req JoinRequest) Verdict {
	req.Hook = HookJoin
	req.Resume = req.Since != nil
	return h.call(ctx, req, true, req.User)
}

// Send implements Sender. A room message always carries its client's cid
// (docs/protocol.md), so the call is retried: (room, user, cid) tells the
// backend a retry from a second message. Without a cid it would not be.
func (h *Hook) Send(ctx context.Context, req SendRequest) Verdict {
	req.Hook = HookSend
	return h.call(ctx, req, req.CID != "", req.User)
}

// failure is a failed attempt, with the reason its metric counts.
type failure struct {
	reason string
	retry  bool
	err    error
}

func (f *failure) Error() string { return f.reason + ": " + f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

// call POSTs body, retrying when idempotent, and applies the failure
// policy.
func (h *Hook) call(ctx context.Context, body any, idempotent bool, user string) Verdict {
	start := time.Now()
	defer func() { h.metrics.Duration.WithLabelValues(h.name).Observe(time.Since(start).Seconds()) }()
	payload, err := json.Marshal(body)
	if err != nil {
		return h.failed(fmt.Errorf("encode %s hook request: %w", h.name, err), false, user, start)
	}
	attempts := 1
	if idempotent {
		attempts += max(h.retries, 0)
	}
	var last error
	lastReason := ""
	for i := range attempts {
		reply, err := h.breaker.Execute(func() (Reply, error) { return h.attempt(ctx, payload) })
		if err == nil {
			return h.decide(reply, user, start)
		}
		var f *failure
		if !errors.As(err, &f) {
			// gobreaker refused: open, or half-open with its probe out.
			f = &failure{reason: "breaker_open", err: err}
		}
		h.metrics.Failures.WithLabelValues(h.name, f.reason).Inc()
		last, lastReason = fmt.Errorf("%s hook attempt %d: %w", h.name, i+1, f), f.reason

		if !f.retry || ctx.Err() != nil {
			break
		}
	}
	return h.failed(last, lastReason == "breaker_open", user, start)
}

// attempt makes one request.
func (h *Hook) attempt(ctx context.Context, payload []byte) (Reply, error) {
	ctx, cancel := context.WithTimeout(ctx, h.ep.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.ep.URL, bytes.NewReader(payload))
	if err != nil {
		return Reply{}, &failure{reason: "unreachable", err: fmt.Errorf("build request: %w", err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "chatd/"+version.Version)
	req.Header.Set("X-Ringchat-Hook", h.name)
	if len(h.secret) > 0 {
		ts, sig := reqsign.Sign(h.secret, time.Now(), payload)
		req.Header.Set(reqsign.HeaderTimestamp, ts)
		req.Header.Set(reqsign.HeaderSignature, sig)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		reason := "unreachable"
		if errors.Is(err, context.DeadlineExceeded) {
			reason = "timeout"
		}
		return Reply{}, &failure{reason: reason, retry: true, err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxReplyBytes))
	if err != nil {
		reason := "unreachable"
		if errors.Is(err, context.DeadlineExceeded) {
			reason = "timeout"
		}
		return Reply{}, &failure{reason: reason, retry: true, err: fmt.Errorf("read reply: %w", err)}
	}
	if resp.StatusCode/100 != 2 {
		// A 5xx is the backend in trouble: worth another try. A 4xx is
		// chatd and the backend disagreeing (a wrong URL, a signature it
		// refuses): the same request would get the same answer.
		return Reply{}, &failure{reason: "status", retry: resp.StatusCode >= 500, err: errors.New(resp.Status)}
	}
	var r Reply
	if err := json.Unmarshal(data, &r); err != nil {
		return Reply{}, &failure{reason: "bad_reply", err: fmt.Errorf("decode reply: %w", err)}
	}
	if err := h.check(&r); err != nil {
		return Reply{}, &failure{reason: "bad_reply", err: err}
	}
	return r, nil
}

// check validates a reply for this hook.
func (h *Hook) check(r *Reply) error {
	switch r.Result {
	case ResultDeny:
		return nil
	case ResultAllow:
		if h.name == HookConnect && !validUser(r.User) {
			return errors.New("connect hook allowed without a valid user (1 to 64 bytes of printable UTF-8)")
		}
		return nil
	case ResultReplace:
		if h.name != HookSend {
			return errors.New("only the send hook may answer replace")
		}
		if r.Text == "" || !utf8.ValidString(r.Text) {
			// An empty message is not one a client could send either; a
			// filter that wants it gone answers deny.
			return errors.New("replacement text is empty or not valid UTF-8")
		}
		return nil
	}
	return fmt.Errorf("result %q is none of allow, deny, replace", r.Result)
}

// decide turns a valid reply into a verdict.
func (h *Hook) decide(r Reply, user string, start time.Time) Verdict {
	h.metrics.Calls.WithLabelValues(h.name, r.Result).Inc()
	if r.Result == ResultDeny {
		reason := cleanReason(r.Reason)
		h.log.Info("hook denied", "hook", h.name, "user", user, "reason", reason, "took", time.Since(start).String())
		return Verdict{Reason: reason}
	}
	h.log.Debug("hook allowed", "hook", h.name, "user", user, "result", r.Result, "took", time.Since(start).String())
	return Verdict{Allowed: true, User: r.User, Replaced: r.Result == ResultReplace, Text: r.Text}
}

// failed applies the failure policy. A call the open breaker refused is
// logged at debug only: the breaker's opening was logged once at warn, and
// a line per refused call would flood the log exactly when the backend is
// down and every client is being refused.
func (h *Hook) failed(err error, breakerOpen bool, user string, start time.Time) Verdict {
	allowed := h.ep.OnFailure == Allow
	result := "failed_deny"
	if allowed {
		result = "failed_allow"
	}
	h.metrics.Calls.WithLabelValues(h.name, result).Inc()
	level := slog.LevelWarn
	if breakerOpen {
		level = slog.LevelDebug
	}
	h.log.Log(context.Background(), level, "hook failed; failure policy applied", "hook", h.name, "user", user, "policy", string(h.ep.OnFailure), "err", err, "took", time.Since(start).String())
	return Verdict{Allowed: allowed, Failed: true}
}
