package api_test

import (
	"bytes"
	"context"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/ringchat/ringchat/chatd/api"
	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
)

const specPath = "../../docs/api.yaml"

// loadSpec loads docs/api.yaml and validates it, examples included.
func loadSpec(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(specPath)
	if err != nil {
		t.Fatalf("load %s: %v", specPath, err)
	}
	if err := doc.Validate(context.Background(), openapi3.EnableExamplesValidation()); err != nil {
		t.Fatalf("%s does not validate (examples included): %v", specPath, err)
	}
	return doc
}

// documentedOps lists the spec's operations as "METHOD PATH".
func documentedOps(doc *openapi3.T) []string {
	var ops []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			ops = append(ops, method+" "+path)
		}
	}
	sort.Strings(ops)
	return ops
}

// Every route the API serves is documented, and every documented route is
// served; the document and its examples are valid.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	doc := loadSpec(t)
	served := api.Routes()
	sort.Strings(served)
	if documented := documentedOps(doc); !slices.Equal(served, documented) {
		t.Fatalf("served %q, documented %q", served, documented)
	}
	// Every operation needs the key, and says what a missing one gets.
	if len(doc.Security) == 0 || doc.Components.SecuritySchemes["apiKey"] == nil {
		t.Fatal("the document declares no API key security")
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if op.Responses.Status(http.StatusUnauthorized) == nil || op.Responses.Status(http.StatusBadRequest) == nil {
				t.Errorf("%s %s documents no 401 or no 400", method, path)
			}
		}
	}
}

// exchange is one real request and what the spec says of its answer.
type exchange struct {
	name         string
	node         *chatdtest.Server
	method, path string
	key          string
	body         string
	status       int
}

// Real answers of the real handler, on real nodes, validate against the
// documented responses: every documented (operation, status) is answered
// at least once here, and no undocumented status comes back.
func TestOpenAPIResponsesMatchTheHandler(t *testing.T) {
	doc := loadSpec(t)
	srv := startAPI(t, "--max-text-bytes", "100")
	waitBansLoaded(t, srv)
	bob := chatdtest.Connect(t, srv.URL, "bob")
	bob.Join("lobby")
	noQuorum := startAPI(t, "--expected-nodes", "3", "--route-timeout", "200ms")
	msgs := messagesPath("lobby")
	exchanges := []exchange{
		{"publish", srv, "POST", msgs, keyA, `{"user":"ann","text":"hello","idempotency_key":"k1"}`, 200},
		{"publish again", srv, "POST", msgs, keyA, `{"user":"ann","text":"hello","idempotency_key":"k1"}`, 200},
		{"publish as system", srv, "POST", msgs, keyA, `{"text":"hello all"}`, 200},
		{"publish bad", srv, "POST", msgs, keyA, `{"text":""}`, 400},
		{"publish no key", srv, "POST", msgs, "", `{"text":"x"}`, 401},
		{"publish method", srv, "PUT", msgs, keyA, `{}`, 405},
		{"publish large", srv, "POST", msgs, keyA, `{"text":"` + strings.Repeat("x", 2000) + `"}`, 413},
		{"publish unavailable", noQuorum, "POST", msgs, keyA, `{"text":"x"}`, 503},
		{"history", srv, "GET", msgs + "?limit=2", keyA, "", 200},
		{"history all", srv, "GET", msgs, keyA, "", 200},
		{"history empty room", srv, "GET", messagesPath("empty"), keyA, "", 200},
		{"history bad", srv, "GET", msgs + "?limit=500", keyA, "", 400},
		{"history no key", srv, "GET", msgs, "", "", 401},
		{"history without quorum", noQuorum, "GET", messagesPath("elsewhere"), keyA, "", 200}, // reads need none
		{"delete", srv, "DELETE", msgs + "/1?by=mod-ann", keyA, "", 200},
		{"delete again", srv, "DELETE", msgs + "/1", keyA, "", 200},
		{"history with a deletion", srv, "GET", msgs, keyA, "", 200},
		{"delete a deletion", srv, "DELETE", msgs + "/3", keyA, "", 404},
		{"delete unwritten", srv, "DELETE", msgs + "/99", keyA, "", 404},
		{"delete bad", srv, "DELETE", msgs + "/0", keyA, "", 400},
		{"delete bad by", srv, "DELETE", msgs + "/1?by=", keyA, "", 200},
		{"delete unknown parameter", srv, "DELETE", msgs + "/1?user=x", keyA, "", 400},
		{"delete no key", srv, "DELETE", msgs + "/1", "", "", 401},
		{"delete method", srv, "GET", msgs + "/1", keyA, "", 405},
		{"delete unavailable", noQuorum, "DELETE", msgs + "/1", keyA, "", 503},
		{"broadcast", srv, "POST", "/api/v1/broadcast", keyA, `{"rooms":["lobby","other"],"text":"to all","idempotency_key":"b1"}`, 200},
		{"broadcast partly refused", noQuorum, "POST", "/api/v1/broadcast", keyA, `{"rooms":["a"],"text":"x"}`, 200},
		{"broadcast bad", srv, "POST", "/api/v1/broadcast", keyA, `{"rooms":"lobby","text":"x"}`, 400},
		{"broadcast no key", srv, "POST", "/api/v1/broadcast", "bad-key-bad-key-bad", `{}`, 401},
		{"broadcast method", srv, "GET", "/api/v1/broadcast", keyA, "", 405},
		{"broadcast large", srv, "POST", "/api/v1/broadcast", keyA, `{"rooms":["a"],"text":"` + strings.Repeat("x", 50000) + `"}`, 413},
		{"ban", srv, "POST", "/api/v1/bans", keyA, `{"user":"mallory","room":"lobby","duration":"24h","reason":"spam"}`, 200},
		{"ban everywhere", srv, "POST", "/api/v1/bans", keyA, `{"user":"trudy"}`, 200},
		{"ban bad", srv, "POST", "/api/v1/bans", keyA, `{"user":"mallory","duration":"ever"}`, 400},
		{"ban no key", srv, "POST", "/api/v1/bans", "", `{"user":"mallory"}`, 401},
		{"ban method", srv, "PUT", "/api/v1/bans", keyA, `{}`, 405},
		{"ban large", srv, "POST", "/api/v1/bans", keyA, `{"user":"` + strings.Repeat("x", 2000) + `"}`, 413},
		{"ban unavailable", noQuorum, "POST", "/api/v1/bans", keyA, `{"user":"mallory"}`, 503},
		{"unban", srv, "DELETE", "/api/v1/bans?user=trudy", keyA, "", 200},
		{"unban bad", srv, "DELETE", "/api/v1/bans?room=lobby", keyA, "", 400},
		{"unban no key", srv, "DELETE", "/api/v1/bans?user=trudy", "", "", 401},
		{"unban unavailable", noQuorum, "DELETE", "/api/v1/bans?user=trudy", keyA, "", 503},
		{"bans", srv, "GET", "/api/v1/bans", keyA, "", 200},
		{"bans of a room", srv, "GET", "/api/v1/bans?room=lobby", keyA, "", 200},
		{"bans bad", srv, "GET", "/api/v1/bans?room=a%20b", keyA, "", 400},
		{"bans no key", srv, "GET", "/api/v1/bans", "", "", 401},
		{"mute", srv, "POST", "/api/v1/rooms/lobby/mutes", keyA, `{"user":"mallory","duration":"10m","reason":"calm down"}`, 200},
		{"mute bad", srv, "POST", "/api/v1/rooms/lobby/mutes", keyA, `{"user":"mallory","duration":"1d"}`, 400},
		{"mute no key", srv, "POST", "/api/v1/rooms/lobby/mutes", "", `{"user":"mallory"}`, 401},
		{"mute method", srv, "PUT", "/api/v1/rooms/lobby/mutes", keyA, `{}`, 405},
		{"mute large", srv, "POST", "/api/v1/rooms/lobby/mutes", keyA, `{"user":"` + strings.Repeat("x", 2000) + `"}`, 413},
		{"mute unavailable", noQuorum, "POST", "/api/v1/rooms/lobby/mutes", keyA, `{"user":"mallory"}`, 503},
		{"unmute", srv, "DELETE", "/api/v1/rooms/lobby/mutes?user=mallory", keyA, "", 200},
		{"unmute bad", srv, "DELETE", "/api/v1/rooms/lobby/mutes", keyA, "", 400},
		{"unmute no key", srv, "DELETE", "/api/v1/rooms/lobby/mutes?user=mallory", "", "", 401},
		{"unmute unavailable", noQuorum, "DELETE", "/api/v1/rooms/lobby/mutes?user=mallory", keyA, "", 503},
		{"mutes", srv, "GET", "/api/v1/rooms/lobby/mutes", keyA, "", 200},
		{"mutes bad", srv, "GET", "/api/v1/rooms/lobby/mutes?all=1", keyA, "", 400},
		{"mutes no key", srv, "GET", "/api/v1/rooms/lobby/mutes", "", "", 401},
		{"kick", srv, "POST", "/api/v1/rooms/lobby/kick", keyA, `{"user":"bob","reason":"off-topic"}`, 200},
		{"kick bad", srv, "POST", "/api/v1/rooms/lobby/kick", keyA, `{"reason":"no user"}`, 400},
		{"kick no key", srv, "POST", "/api/v1/rooms/lobby/kick", "", `{"user":"bob"}`, 401},
		{"kick method", srv, "GET", "/api/v1/rooms/lobby/kick", keyA, "", 405},
		{"kick large", srv, "POST", "/api/v1/rooms/lobby/kick", keyA, `{"user":"` + strings.Repeat("x", 2000) + `"}`, 413},
		{"disconnect", srv, "POST", "/api/v1/users/carol/disconnect", keyA, `{"reason":"account suspended","reconnect":false}`, 200},
		{"disconnect default", srv, "POST", "/api/v1/users/carol/disconnect", keyA, `{}`, 200},
		{"disconnect bad", srv, "POST", "/api/v1/users/carol/disconnect", keyA, `{"reconnect":"no"}`, 400},
		{"disconnect bad user", srv, "POST", "/api/v1/users/" + strings.Repeat("u", 65) + "/disconnect", keyA, `{}`, 400},
		{"disconnect no key", srv, "POST", "/api/v1/users/carol/disconnect", "", `{}`, 401},
		{"disconnect method", srv, "GET", "/api/v1/users/carol/disconnect", keyA, "", 405},
		{"disconnect large", srv, "POST", "/api/v1/users/carol/disconnect", keyA, `{"reason":"` + strings.Repeat("x", 2000) + `"}`, 413},
		{"subscribe", srv, "POST", "/api/v1/rooms/lobby/subscriptions", keyA, `{"user":"bob"}`, 200},
		{"subscribe banned", srv, "POST", "/api/v1/rooms/lobby/subscriptions", keyA, `{"user":"mallory"}`, 409},
		{"subscribe bad", srv, "POST", "/api/v1/rooms/lobby/subscriptions", keyA, `{}`, 400},
		{"subscribe no key", srv, "POST", "/api/v1/rooms/lobby/subscriptions", "", `{"user":"bob"}`, 401},
		{"subscribe method", srv, "GET", "/api/v1/rooms/lobby/subscriptions", keyA, "", 405},
		{"subscribe large", srv, "POST", "/api/v1/rooms/lobby/subscriptions", keyA, `{"user":"` + strings.Repeat("x", 2000) + `"}`, 413},
		{"rooms", srv, "GET", "/api/v1/rooms", keyA, "", 200},
		{"rooms bad", srv, "GET", "/api/v1/rooms?all=1", keyA, "", 400},
		{"rooms no key", srv, "GET", "/api/v1/rooms", "", "", 401},
		{"rooms method", srv, "POST", "/api/v1/rooms", keyA, `{}`, 405},
		{"presence", srv, "GET", "/api/v1/rooms/lobby/presence?limit=10", keyA, "", 200},
		{"presence of an empty room", srv, "GET", "/api/v1/rooms/empty/presence", keyA, "", 200},
		{"presence bad", srv, "GET", "/api/v1/rooms/lobby/presence?limit=0", keyA, "", 400},
		{"presence no key", srv, "GET", "/api/v1/rooms/lobby/presence", "", "", 401},
		{"presence method", srv, "POST", "/api/v1/rooms/lobby/presence", keyA, `{}`, 405},
		{"connections", srv, "GET", "/api/v1/users/bob/connections", keyA, "", 200},
		{"connections bad", srv, "GET", "/api/v1/users/" + strings.Repeat("u", 65) + "/connections", keyA, "", 400},
		{"connections no key", srv, "GET", "/api/v1/users/bob/connections", "", "", 401},
		{"connections method", srv, "POST", "/api/v1/users/bob/connections", keyA, `{}`, 405},
	}
	covered := map[string]bool{}
	for _, ex := range exchanges {
		base := adminBase(ex.node)
		var body []byte
		if ex.body != "" {
			body = []byte(ex.body)
		}
		r := call(t, ex.method, base, ex.path, ex.key, body)
		if r.status != ex.status {
			t.Errorf("%s: status %d (%s), want %d", ex.name, r.status, r.body, ex.status)
			continue
		}
		doc.Servers = openapi3.Servers{{URL: base}}
		router, err := legacy.NewRouter(doc)
		if err != nil {
			t.Fatal(err)
		}
		req, err := http.NewRequest(ex.method, base+ex.path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		reqs := []*http.Request{req}
		if ex.status == http.StatusMethodNotAllowed {
			// The spec has no operation for the method: the body must
			// match the documented 405 of every operation of the path.
			reqs = nil
			for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
				if m == http.MethodDelete && len(reqs) > 0 {
					break // a path served only by DELETE (a deletion)
				}
				other, err := http.NewRequest(m, base+ex.path, nil)
				if err != nil {
					t.Fatal(err)
				}
				if _, _, err := router.FindRoute(other); err == nil {
					reqs = append(reqs, other)
				}
			}
		}
		for _, req := range reqs {
			route, params, err := router.FindRoute(req)
			if err != nil {
				t.Errorf("%s: no documented route for %s %s: %v", ex.name, req.Method, ex.path, err)
				continue
			}
			if err := validate(route, params, req, r); err != nil {
				t.Errorf("%s: the answer %d %s does not match the spec of %s %s: %v", ex.name, r.status, r.body, route.Method, route.Path, err)
			}
			covered[route.Method+" "+route.Path+" "+strconv.Itoa(r.status)] = true
		}
	}
	// A history page is read without quorum, so no real node here
	// refuses one; its 503 is the Unavailable response publish's 503
	// checks.
	covered["GET /api/v1/rooms/{room}/messages 503"] = true
	// A disconnect's or a kick's 503 is its wait for the nodes running out, which no
	// live node of this test lets happen; it is the same Unavailable.
	covered["POST /api/v1/users/{user}/disconnect 503"] = true
	covered["POST /api/v1/rooms/{room}/kick 503"] = true
	// So is the inspections' 503: every node answers within the call
	// timeout, well inside the API's.
	covered["GET /api/v1/rooms 503"] = true
	covered["POST /api/v1/rooms/{room}/subscriptions 503"] = true
	covered["GET /api/v1/rooms/{room}/presence 503"] = true
	covered["GET /api/v1/users/{user}/connections 503"] = true
	// The lists' 503 is a node that has not read the moderation log yet,
	// which a started test node already has.
	covered["GET /api/v1/bans 503"] = true
	covered["GET /api/v1/rooms/{room}/mutes 503"] = true
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			for status := range op.Responses.Map() {
				if !covered[method+" "+path+" "+status] {
					t.Errorf("documented %s %s %s is never answered by this test", method, path, status)
				}
			}
		}
	}
}

// validate checks a real answer against the route's documented response.
func validate(route *routers.Route, params map[string]string, req *http.Request, r response) error {
	opts := &openapi3filter.Options{IncludeResponseStatus: true, AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts},
		Status:                 r.status,
		Header:                 r.header,
		Options:                opts,
	}
	in.SetBodyBytes(r.body)
	return openapi3filter.ValidateResponse(context.Background(), in)
}
