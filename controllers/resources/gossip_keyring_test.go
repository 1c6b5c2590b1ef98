package resources

import (
	"encoding/base64"
	"strings"
	"testing"

	chatv1alpha1 "github.com/ringchat/ringchat/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
)

// TestGossipKeyringNew: one fresh AES-256 key, base64, a line of its own.
func TestGossipKeyringNew(t *testing.T) {
	cc := testCluster(3)
	s := build(t, GossipKeyringBuilder{}, cc).(*corev1.Secret)
	keys := KeyringKeys(s.Data[chatv1alpha1.DefaultGossipKeyringKey])
	if len(keys) != 1 {
		t.Fatalf("keys %q, want one", keys)
	}
	if b, err := base64.StdEncoding.DecodeString(keys[0]); err != nil || len(b) != 32 {
		t.Fatalf("key %q: %d bytes, %v; want base64 of 32", keys[0], len(b), err)
	}
	other := build(t, GossipKeyringBuilder{}, cc).(*corev1.Secret)
	if string(other.Data[chatv1alpha1.DefaultGossipKeyringKey]) == string(s.Data[chatv1alpha1.DefaultGossipKeyringKey]) {
		t.Fatal("two new keyrings share their key")
	}
	if s.Immutable != nil && *s.Immutable {
		t.Fatal("the keyring is immutable: it could not rotate")
	}
}

// TestGossipKeyringRotation walks add, promote, remove on a stored Secret:
// each step applied once, the same request again changes nothing, and a
// step out of order changes nothing.
func TestGossipKeyringRotation(t *testing.T) {
	cc := testCluster(3)
	s := stored(build(t, GossipKeyringBuilder{}, cc).(*corev1.Secret))
	old := KeyringKeys(s.Data[chatv1alpha1.DefaultGossipKeyringKey])[0]
	step := func(req string) []string {
		t.Helper()
		if err := (GossipKeyringBuilder{Rotation: req}).Update(cc, s); err != nil {
			t.Fatal(err)
		}
		return KeyringKeys(s.Data[chatv1alpha1.DefaultGossipKeyringKey])
	}
	// Out of order on a fresh keyring: nothing happens.
	for _, req := range []string{"promote", "remove", "bogus"} {
		if keys := step(req); len(keys) != 1 || keys[0] != old {
			t.Fatalf("%s on a fresh keyring changed it: %q", req, keys)
		}
	}
	keys := step("add")
	if len(keys) != 2 || keys[0] != old || keys[1] == old {
		t.Fatalf("after add: %q, want the old key first and a new one", keys)
	}
	added := keys[1]
	if again := step("add"); len(again) != 2 || again[1] != added {
		t.Fatalf("add seen again changed the keyring: %q", again)
	}
	if s.Annotations[chatv1alpha1.AnnotationGossipKeyringStep] != "add" {
		t.Fatalf("step annotation %q", s.Annotations[chatv1alpha1.AnnotationGossipKeyringStep])
	}
	if keys := step("remove"); len(keys) != 2 || keys[0] != old {
		t.Fatalf("remove before promote changed the keyring: %q", keys)
	}
	if keys := step("promote"); len(keys) != 2 || keys[0] != added || keys[1] != old {
		t.Fatalf("after promote: %q, want new, old", keys)
	}
	if keys := step("promote"); keys[0] != added {
		t.Fatalf("promote seen again swapped back: %q", keys)
	}
	if keys := step("remove"); len(keys) != 1 || keys[0] != added {
		t.Fatalf("after remove: %q, want the new key alone", keys)
	}
	// A second rotation starts over with add.
	if keys := step("add"); len(keys) != 2 || keys[0] != added {
		t.Fatalf("second add: %q", keys)
	}
	if !strings.HasSuffix(string(s.Data[chatv1alpha1.DefaultGossipKeyringKey]), "\n") {
		t.Error("the keyring file does not end with a newline")
	}
}

func TestCheckRotation(t *testing.T) {
	for _, tc := range []struct {
		n         int
		last, req string
		ok        bool
	}{
		{1, "", "add", true}, {1, "remove", "add", true}, {2, "add", "promote", true}, {2, "promote", "remove", true},
		{2, "add", "add", true}, // already applied: nothing to do
		{2, "promote", "add", false}, {1, "", "promote", false}, {1, "", "remove", false}, {2, "add", "remove", false},
		{1, "", "Add", false},
	} {
		err := CheckRotation(tc.n, tc.last, tc.req)
		if (err == nil) != tc.ok {
			t.Errorf("CheckRotation(%d, %q, %q) = %v, want ok=%v", tc.n, tc.last, tc.req, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "add, promote, remove") {
			t.Errorf("error %q does not give the order of the steps", err)
		}
	}
}
