package peerpki

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/certs"
)

// TestNodeCertificateAcceptedByChatd: what the operator issues is what
// chatd's own loader (chatd/certs, the code behind --peer-tls-*) takes for
// the pod's name, and refuses for another name.
func TestNodeCertificateAcceptedByChatd(t *testing.T) {
	now := time.Now()
	caPEM, caKey, err := NewCA("ringchat test", now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := LoadCA(caPEM, caKey)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"chat-1", "chat-1.chat-headless", "chat-1.chat-headless.ns.svc"}
	crt, key, err := ca.IssueNode(names, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := certs.PeerFiles{Cert: write(t, dir, "chat-1.crt", crt), Key: write(t, dir, "chat-1.key", key), CA: write(t, dir, "ca.crt", ca.CertPEM())}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := certs.NewPeer(files, "chat-1", time.Hour, log); err != nil {
		t.Fatalf("chatd refuses the operator's certificate: %v", err)
	}
	if _, err := certs.NewPeer(files, "chat-2", time.Hour, log); err == nil {
		t.Fatal("chatd took chat-1's certificate as chat-2's")
	}
}

// TestCheck: a fresh certificate passes; one for other names, from another
// CA, with a key of another certificate, or expiring before the renewal
// time does not.
func TestCheck(t *testing.T) {
	now := time.Now()
	ca := newCA(t, now)
	other := newCA(t, now)
	names := []string{"c-0", "c-0.h"}
	crt, key, err := ca.IssueNode(names, now, 10*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Check(crt, key, names, now, now.Add(9*time.Hour)); err != nil {
		t.Fatalf("fresh certificate refused: %v", err)
	}
	crt2, key2, err := ca.IssueNode(names, now, 10*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ocrt, okey, err := other.IssueNode(names, now, 10*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		crt, key []byte
		names    []string
		renewAt  time.Time
		want     string
	}{
		"other names":     {crt, key, []string{"c-1", "c-1.h"}, now, "names"},
		"other CA":        {ocrt, okey, names, now, "not valid under the CA"},
		"mismatched key":  {crt, key2, names, now, "certificate and key"},
		"due for renewal": {crt2, key2, names, now.Add(11 * time.Hour), "due for renewal"},
		"garbage":         {[]byte("x"), []byte("y"), names, now, "certificate and key"},
	} {
		err := ca.Check(tc.crt, tc.key, tc.names, now, tc.renewAt)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Check = %v, want an error containing %q", name, err, tc.want)
		}
	}
	// Expired by the time it is checked.
	if err := ca.Check(crt, key, names, now.Add(11*time.Hour), now.Add(11*time.Hour)); err == nil {
		t.Error("an expired certificate passed")
	}
}

// TestIssueNodeStopsAtTheCAExpiry: no certificate outlives its CA.
func TestIssueNodeStopsAtTheCAExpiry(t *testing.T) {
	now := time.Now()
	caPEM, caKey, err := NewCA("short", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := LoadCA(caPEM, caKey)
	if err != nil {
		t.Fatal(err)
	}
	crt, _, err := ca.IssueNode([]string{"n"}, now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	na, err := NotAfter(crt)
	if err != nil {
		t.Fatal(err)
	}
	if !na.Equal(ca.NotAfter()) {
		t.Fatalf("certificate expires %v, CA %v", na, ca.NotAfter())
	}
	if _, err := LoadCA(crt, caKey); err == nil {
		t.Fatal("LoadCA took a node certificate with another key")
	}
}

func newCA(t *testing.T, now time.Time) *CA {
	t.Helper()
	c, k, err := NewCA("test", now, 100*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := LoadCA(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func write(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
