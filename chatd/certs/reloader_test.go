package certs

import (
	"bytes"
	"crypto/x509"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/internal/testcert"
)

func serialServed(t *testing.T, r *Reloader) int64 {
	t.Helper()
	c, err := r.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.SerialNumber.Int64()
}

func TestReloaderFollowsTheFiles(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	testcert.Write(t, dir, 1, now)
	var logs bytes.Buffer
	r, err := NewReloader(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if got := serialServed(t, r); got != 1 {
		t.Fatalf("serves serial %d, want 1", got)
	}

	// Renewed: served once the check interval has passed, not before.
	testcert.Write(t, dir, 2, now.Add(time.Second))
	if got := serialServed(t, r); got != 1 {
		t.Fatalf("serves serial %d before the check interval, want 1", got)
	}
	r.CheckInterval = 0
	if got := serialServed(t, r); got != 2 {
		t.Fatalf("serves serial %d after the renewal, want 2", got)
	}

	// A key that does not match (a renewal caught half-way) keeps serving
	// the last good pair, and says so once.
	other := t.TempDir() // another key pair...
	testcert.Write(t, other, 3, now)
	crt, err := os.ReadFile(filepath.Join(other, "tls.crt"))
	if err != nil {
		t.Fatal(err)
	}
	testcert.WriteFile(t, filepath.Join(dir, "tls.crt"), crt, now.Add(2*time.Second)) // ...whose certificate meets the old key
	for range 2 {
		if got := serialServed(t, r); got != 2 {
			t.Fatalf("serves serial %d with a mismatched pair on disk, want 2", got)
		}
	}
	if n := strings.Count(logs.String(), "keeping the current TLS certificate"); n != 1 {
		t.Errorf("logged the bad pair %d times, want once:\n%s", n, logs.String())
	}
}

func TestNewReloaderRefusesABadPair(t *testing.T) {
	dir := t.TempDir()
	if _, err := NewReloader(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), slog.Default()); err == nil || !strings.Contains(err.Error(), "TLS file") {
		t.Fatalf("missing files: err = %v", err)
	}
	testcert.WriteFile(t, filepath.Join(dir, "tls.crt"), []byte("not a certificate"), time.Now())
	testcert.WriteFile(t, filepath.Join(dir, "tls.key"), []byte("not a key"), time.Now())
	if _, err := NewReloader(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), slog.Default()); err == nil || !strings.Contains(err.Error(), "loading the TLS certificate") {
		t.Fatalf("garbage files: err = %v", err)
	}
}
