package config

import (
	"io"
	"slices"
	"strings"
	"testing"
)

// TestParseNamespaces: --socketio-namespaces entries, ":token", and every
// malformed entry refused with a message naming it.
func TestParseNamespaces(t *testing.T) {
	got, err := ParseNamespaces(" /, /support ,/staff:token,,")
	if err != nil {
		t.Fatal(err)
	}
	want := []NamespaceSpec{{"/", false}, {"/support", false}, {"/staff", true}}
	if !slices.Equal(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if got, err := ParseNamespaces(""); err != nil || len(got) != 0 {
		t.Fatalf("empty: %v %v", got, err)
	}
	for _, bad := range []string{"support", "/a/b", "/with space", "/" + strings.Repeat("x", 24), "/x:admin", "/,/", "/é"} {
		if _, err := ParseNamespaces(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := Load([]string{"--allow-anonymous", "--socketio-namespaces", "nope"}, env(nil), io.Discard); err == nil || !strings.Contains(err.Error(), "--socketio-namespaces") {
		t.Errorf("a bad --socketio-namespaces: %v", err)
	}
}
