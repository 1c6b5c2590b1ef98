package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/ringchat/ringchat/chatd/reqsign"
)

var cmdSink = &command{
	name:    "sink",
	args:    "",
	summary: "receive chatd's event stream and print every event (a backend's end of --event-stream-url)",
	details: `
Serves HTTP on --listen and takes the batches chatd's event stream POSTs
(docs/api.md, "Event stream"): each event is printed as it arrives — with
--json, one JSON line per event, exactly as chatd sent it (its id, type,
room, epoch, seq, from, text, ts...). Every batch is answered 200, so chatd
moves its cursors on. With --secret-file (chatd's --hook-secret-file), a
batch whose X-Ringchat-Signature does not verify, or whose timestamp is
more than a minute off, is answered 401 and printed as a notice: chatd
sends it again. Events arrive at least once: the same id may be printed
twice. Runs until interrupted or --timeout; a listen error exits 1.`,
	flags: func(fs *flag.FlagSet, o *options) {
		fs.StringVar(&o.listen, "listen", "127.0.0.1:8090", "address to serve the event stream on (host:port)")
		fs.StringVar(&o.secretFile, "secret-file", "", "file holding chatd's --hook-secret-file secret: check every batch's signature")
	},
	run: runSink,
}

// sinkBatch is an event stream batch as chatctl reads it: the events are
// kept as sent.
type sinkBatch struct {
	Node   string            `json:"node"`
	Events []json.RawMessage `json:"events"`
	Gaps   []json.RawMessage `json:"gaps"`
}

func runSink(ctx context.Context, e *env, o *options, args []string) error {
	if len(args) > 0 {
		return usageError("sink takes no arguments")
	}
	var secret []byte
	if o.secretFile != "" {
		b, err := os.ReadFile(o.secretFile)
		if err != nil {
			return usageError(fmt.Sprintf("--secret-file: %v", err))
		}
		if secret = bytes.TrimSpace(b); len(secret) == 0 {
			return usageError("--secret-file " + o.secretFile + " is empty")
		}
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return &cliError{exit: exitFailure, code: "listen", msg: "cannot listen on " + o.listen, err: err}
	}
	var mu sync.Mutex // the printer is not safe for concurrent batches
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if secret != nil && !reqsign.Verify(secret, time.Now(), time.Minute, r.Header.Get(reqsign.HeaderTimestamp), r.Header.Get(reqsign.HeaderSignature), body) {
			e.out.notice(map[string]any{"type": "chatctl.bad_signature", "remote": r.RemoteAddr}, "refused a batch from %s: bad signature", r.RemoteAddr)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var b sinkBatch
		if err := json.Unmarshal(body, &b); err != nil {
			e.out.notice(map[string]any{"type": "chatctl.bad_batch", "remote": r.RemoteAddr}, "refused a batch from %s: %v", r.RemoteAddr, err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		for _, g := range b.Gaps {
			e.out.notice(map[string]any{"type": "chatctl.stream_gap", "gap": g}, "gap: %s", g)
		}
		for _, ev := range b.Events {
			if e.out.json {
				e.out.frame(ev)
				continue
			}
			var v struct {
				Type, Room, From, Text string
				Seq, Target            uint64
			}
			_ = json.Unmarshal(ev, &v)
			if v.Type == "deleted" {
				e.out.text("%s #%d %s deleted #%d (from %s)", v.Room, v.Seq, v.From, v.Target, b.Node)
			} else {
				e.out.text("%s #%d %s: %s (from %s)", v.Room, v.Seq, v.From, v.Text, b.Node)
			}
		}
		w.WriteHeader(http.StatusOK)
	})
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	e.out.notice(map[string]any{"type": "chatctl.listening", "addr": ln.Addr().String()}, "listening on %s", ln.Addr())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return &cliError{exit: exitFailure, code: "serve", msg: "serving the event stream failed", err: err}
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return &cliError{exit: exitFailure, code: "serve", msg: "stopping", err: err}
	}
	return outputErr(e)
}
