package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ringchat/ringchat/chatd/backoff"
)

// Environment variables and defaults of the server API commands.
const (
	envAPIURL     = "CHATCTL_API_URL"
	envAPIKeyFile = "CHATCTL_API_KEY_FILE"
	defaultAPIURL = "http://127.0.0.1:9090"
	// maxAPIAnswer bounds an API answer chatctl reads.
	maxAPIAnswer = 1 << 20
)

var cmdPublish = &command{
	name:    "publish",
	args:    "TEXT... | -",
	summary: "publish a message to a room through the server API (as a backend would)",
	details: `
Posts TEXT to the room through chatd's server API (/api/v1/, on the admin
listener; docs/api.md) with a key of --api-key-file, as --as or, without it,
as the system sender. No WebSocket connection and no join: the key, not a
user's token, authorizes it. Prints the message's sequence number; --json
prints a chatctl.published record (the API's answer). A 503 (the room is moving, no quorum) or a lost
connection is retried with the same idempotency key until --timeout, so the
message is stored once; a refusal (4xx) exits 3 with the API's error code,
a refused key exits 4.`,
	defaultTimeout: 10 * time.Second,
	flags: func(fs *flag.FlagSet, o *options) {
		fs.Var(&o.rooms, "room", "room to publish to (required)")
		fs.StringVar(&o.as, "as", "", "sender's user id (default: the API's system sender)")
		fs.StringVar(&o.apiURL, "api-url", "", "base URL of the server API: chatd's admin listener (env "+envAPIURL+", default "+defaultAPIURL+")")
		fs.StringVar(&o.apiKeyFile, "api-key-file", "", "file holding the API key (its first key line) (env "+envAPIKeyFile+")")
		fs.StringVar(&o.cid, "idempotency-key", "", "1-60 printable ASCII characters (default: random); publishing again with the same key stores nothing new")
	},
	run: runPublish,
}

// apiError is the server API's error body.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Field   string `json:"field"`
	} `json:"error"`
}

// publishRequest is the server API's publish body.
type publishRequest struct {
	User           string `json:"user,omitempty"`
	Text           string `json:"text"`
	IdempotencyKey string `json:"idempotency_key"`
}

// published is the server API's answer to a publish.
type published struct {
	Room      string `json:"room"`
	Seq       uint64 `json:"seq"`
	Epoch     string `json:"epoch"`
	TS        int64  `json:"ts"`
	Duplicate bool   `json:"duplicate"`
}

func runPublish(ctx context.Context, e *env, o *options, args []string) error {
	room, err := oneRoom(o)
	if err != nil {
		return err
	}
	text, err := messageText(e, args)
	if err != nil {
		return err
	}
	base, key, err := apiSettings(o, e.getenv)
	if err != nil {
		return err
	}
	idem := o.cid
	if idem == "" {
		var b [12]byte
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
		idem = "chatctl-" + hex.EncodeToString(b[:])
	}
	body, err := json.Marshal(publishRequest{User: o.as, Text: text, IdempotencyKey: idem})
	if err != nil {
		return fmt.Errorf("encode the request: %w", err)
	}
	raw, err := postWithRetry(ctx, e, base+"/api/v1/rooms/"+url.PathEscape(room)+"/messages", key, body)
	if err != nil {
		return err
	}
	var p published
	if err := json.Unmarshal(raw, &p); err != nil {
		return &cliError{exit: exitFailure, code: "unexpected_reply", msg: "the API's answer is not a publish result", err: err}
	}
	if e.out.json {
		e.out.record(publishedRecord{Type: "chatctl.published", published: p})
	} else {
		dup := ""
		if p.Duplicate {
			dup = " (duplicate: it had been stored already)"
		}
		e.out.text("published to %s: seq %d, epoch %s%s", p.Room, p.Seq, p.Epoch, dup)
	}
	return outputErr(e)
}

// publishedRecord is the chatctl.published JSON record: the API's answer
// with a type.
type publishedRecord struct {
	Type string `json:"type"`
	published
}

// apiSettings reads --api-url and --api-key-file, or their environment
// variables.
func apiSettings(o *options, getenv func(string) string) (base, key string, err error) {
	base = o.apiURL
	if base == "" {
		base = getenv(envAPIURL)
	}
	if base == "" {
		base = defaultAPIURL
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", "", usageError(fmt.Sprintf("--api-url %q: want http(s)://host:port of chatd's admin listener", base))
	}
	path := o.apiKeyFile
	if path == "" {
		path = getenv(envAPIKeyFile)
	}
	if path == "" {
		return "", "", usageError("--api-key-file (or " + envAPIKeyFile + ") is required: the server API needs a key")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", usageError(fmt.Sprintf("read --api-key-file: %v", err))
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			return strings.TrimRight(base, "/"), line, nil
		}
	}
	return "", "", usageError(fmt.Sprintf("--api-key-file %s holds no key", path))
}

// postWithRetry posts body and returns a 200's body. A 503 or a lost
// connection is retried (after Retry-After or a backoff) until ctx ends;
// any other answer ends it.
func postWithRetry(ctx context.Context, e *env, target, key string, body []byte) ([]byte, error) {
	return callWithRetry(ctx, e, http.MethodPost, target, key, body)
}

// callWithRetry is postWithRetry with another method (body nil: none).
func callWithRetry(ctx context.Context, e *env, method, target, key string, body []byte) ([]byte, error) {
	b := backoff.Backoff{Base: 100 * time.Millisecond, Max: 2 * time.Second}
	for {
		status, header, raw, err := post(ctx, method, target, key, body)
		var retryAfter time.Duration
		switch {
		case err != nil && ended(ctx):
			return nil, contextError(ctx, "publishing")
		case err != nil:
			e.out.notice(map[string]any{"type": "chatctl.retrying", "code": "connection_failed", "attempt": b.Attempt() + 1}, "retrying: %v", err)
		case status == http.StatusOK:
			return raw, nil
		case status == http.StatusServiceUnavailable:
			if s, err := strconv.Atoi(header.Get("Retry-After")); err == nil && s > 0 {
				retryAfter = time.Duration(s) * time.Second
			}
			e.out.notice(map[string]any{"type": "chatctl.retrying", "code": "unavailable", "attempt": b.Attempt() + 1}, "the room is unavailable; retrying")
		default:
			return nil, apiRefusal(status, raw)
		}
		t := time.NewTimer(max(b.Next(), retryAfter))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, contextError(ctx, "publishing")
		case <-t.C:
		}
	}
}

// post sends one request with method (a body only when body is not nil).
func post(ctx context.Context, method, target, key string, body []byte) (int, http.Header, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("build the request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s: %w", method, req.URL.Redacted(), err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIAnswer))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("read the answer: %w", err)
	}
	return resp.StatusCode, resp.Header, raw, nil
}

// apiRefusal turns a refused request into chatctl's failure: a refused key
// exits 4, any other refusal 3, with the API's error code.
func apiRefusal(status int, raw []byte) error {
	var ae apiError
	if err := json.Unmarshal(raw, &ae); err != nil || ae.Error.Code == "" {
		return &cliError{exit: exitFailure, code: "unexpected_reply", msg: fmt.Sprintf("the API answered %d without its error body (is --api-url chatd's admin listener, started with --api-key-file?)", status)}
	}
	msg := "server refused the request: " + ae.Error.Code
	if ae.Error.Message != "" {
		msg += ": " + ae.Error.Message
	}
	if status == http.StatusUnauthorized {
		return &cliError{exit: exitAuth, code: ae.Error.Code, msg: msg}
	}
	return &cliError{exit: exitServerError, code: ae.Error.Code, msg: msg}
}
