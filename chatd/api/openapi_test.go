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
		{"broadcast", srv, "POST", "/api/v1/broadcast", keyA, `{"rooms":["lobby","other"],"text":"to all","idempotency_key":"b1"}`, 200},
		{"broadcast partly refused", noQuorum, "POST", "/api/v1/broadcast", keyA, `{"rooms":["a"],"text":"x"}`, 200},
		{"broadcast bad", srv, "POST", "/api/v1/broadcast", keyA, `{"rooms":"lobby","text":"x"}`, 400},
		{"broadcast no key", srv, "POST", "/api/v1/broadcast", "bad-key-bad-key-bad", `{}`, 401},
		{"broadcast method", srv, "GET", "/api/v1/broadcast", keyA, "", 405},
		{"broadcast large", srv, "POST", "/api/v1/broadcast", keyA, `{"rooms":["a"],"text":"` + strings.Repeat("x", 50000) + `"}`, 413},
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
			for _, m := range []string{http.MethodGet, http.MethodPost} {
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
