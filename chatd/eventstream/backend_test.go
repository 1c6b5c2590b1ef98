package eventstream_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/ringchat/ringchat/chatd/eventstream"
	"github.com/ringchat/ringchat/chatd/reqsign"
)

// backend is the application's backend of these tests: a real HTTP server
// on loopback that checks every batch's signature, answers with the
// status the test sets, and checks what it accepted as a backend would:
// per room, after dropping what it has by id, every new event is the next
// seq (no gap, no reordering), and a redelivered event is the same.
type backend struct {
	t      *testing.T
	secret []byte
	// schema is docs/api.yaml's EventBatch: every batch must match it.
	schema *openapi3.Schema
	srv    *http.Server
	ln     net.Listener
	addr   string

	mu       sync.Mutex
	status   int // answered to every batch; 200 by default
	batches  int
	refused  int
	byID     map[string]eventstream.Event
	next     map[string]uint64 // per room: the next seq expected
	epochs   map[string]string
	dups     int
	problems []string
	changed  chan struct{}
}

func newBackend(t *testing.T, secret []byte) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := openapi3.NewLoader().LoadFromFile("../../docs/api.yaml")
	if err != nil {
		t.Fatalf("load docs/api.yaml: %v", err)
	}
	ref := doc.Components.Schemas["EventBatch"]
	if ref == nil || ref.Value == nil {
		t.Fatal("docs/api.yaml has no EventBatch schema")
	}
	b := &backend{t: t, secret: secret, schema: ref.Value, ln: ln, addr: ln.Addr().String(), status: http.StatusOK,
		byID: map[string]eventstream.Event{}, next: map[string]uint64{}, epochs: map[string]string{}, changed: make(chan struct{}, 1)}
	b.serve()
	t.Cleanup(b.stop)
	return b
}

func (b *backend) URL() string { return "http://" + b.addr + "/events" }

func (b *backend) serve() {
	b.srv = &http.Server{Handler: http.HandlerFunc(b.handle), ReadHeaderTimeout: 10 * time.Second}
	ln := b.ln
	go func() { _ = b.srv.Serve(ln) }()
}

// stop closes the server and every connection at once (a kill -9 of the
// backend, as far as chatd can tell).
func (b *backend) stop() {
	if b.srv != nil {
		_ = b.srv.Close()
		b.srv = nil
	}
}

// restart serves again on the same address.
func (b *backend) restart() {
	b.t.Helper()
	var err error
	for range 50 {
		if b.ln, err = net.Listen("tcp", b.addr); err == nil {
			b.serve()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.t.Fatalf("backend: listen on %s again: %v", b.addr, err)
}

func (b *backend) setStatus(code int) {
	b.mu.Lock()
	b.status = code
	b.mu.Unlock()
}

func (b *backend) handle(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.secret != nil && !reqsign.Verify(b.secret, time.Now(), time.Minute, r.Header.Get(reqsign.HeaderTimestamp), r.Header.Get(reqsign.HeaderSignature), body) {
		b.problems = append(b.problems, "a batch with a bad signature")
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if b.status/100 != 2 {
		b.refused++
		w.WriteHeader(b.status)
		return
	}
	var generic any
	if err := json.Unmarshal(body, &generic); err != nil || b.schema.VisitJSON(generic) != nil {
		b.problems = append(b.problems, fmt.Sprintf("a batch that does not match docs/api.yaml's EventBatch: %v %v", err, b.schema.VisitJSON(generic)))
	}
	var batch eventstream.Batch
	if err := json.Unmarshal(body, &batch); err != nil {
		b.problems = append(b.problems, "a batch that is not JSON: "+err.Error())
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	b.batches++
	for _, e := range batch.Events {
		if e.ID != fmt.Sprintf("%s-%d", e.Epoch, e.Seq) {
			b.problems = append(b.problems, fmt.Sprintf("event id %q of %s seq %d", e.ID, e.Epoch, e.Seq))
		}
		if prev, ok := b.byID[e.ID]; ok {
			b.dups++
			if prev != e {
				b.problems = append(b.problems, fmt.Sprintf("event %s delivered again with other content: %+v, then %+v", e.ID, prev, e))
			}
			continue
		}
		if ep, ok := b.epochs[e.Room]; ok && ep != e.Epoch {
			b.problems = append(b.problems, fmt.Sprintf("room %s changed epoch %s -> %s (history lost)", e.Room, ep, e.Epoch))
		}
		b.epochs[e.Room] = e.Epoch
		want := b.next[e.Room]
		if want == 0 {
			want = 1
		}
		if e.Seq != want {
			b.problems = append(b.problems, fmt.Sprintf("room %s: new event seq %d, want %d (a gap or a reordering)", e.Room, e.Seq, want))
		}
		b.next[e.Room] = max(want, e.Seq+1)
		b.byID[e.ID] = e
	}
	w.WriteHeader(http.StatusOK)
	select {
	case b.changed <- struct{}{}:
	default:
	}
}

// has reports whether the backend holds every seq of room up to head.
func (b *backend) has(room string, head uint64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.next[room] > head
}

// event returns the accepted event of room at seq.
func (b *backend) event(room string, seq uint64) (eventstream.Event, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ep := b.epochs[room]
	e, ok := b.byID[fmt.Sprintf("%s-%d", ep, seq)]
	return e, ok
}

// waitAll waits until the backend holds every room's seqs up to heads[room].
func (b *backend) waitAll(t *testing.T, within time.Duration, heads map[string]uint64) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var missing []string
		for room, head := range heads {
			if !b.has(room, head) {
				b.mu.Lock()
				missing = append(missing, fmt.Sprintf("%s up to %d (has below %d)", room, head, b.next[room]))
				b.mu.Unlock()
			}
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			sort.Strings(missing)
			t.Fatalf("after %s the backend still lacks: %s", within, strings.Join(missing, "; "))
		}
		select {
		case <-b.changed:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// check fails the test on anything the backend found wrong.
func (b *backend) check(t *testing.T) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.problems) > 0 {
		t.Fatalf("the backend found %d problems: %s", len(b.problems), strings.Join(b.problems[:min(10, len(b.problems))], "; "))
	}
	t.Logf("backend: %d events in %d batches accepted, %d redelivered, %d batches refused", len(b.byID), b.batches, b.dups, b.refused)
}
