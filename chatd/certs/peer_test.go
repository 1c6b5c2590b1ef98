package certs

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/internal/testcert"
	"github.com/ringchat/ringchat/internal/devpki"
)

func TestPeerFollowsTheFiles(t *testing.T) {
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.crt")
	oldCA, newCA := testcert.NewCA(t, "old CA"), testcert.NewCA(t, "new CA")
	testcert.WriteBundle(t, caFile, oldCA)
	files := oldCA.WriteNode(t, dir, "node-0", caFile)
	var logs bytes.Buffer
	p, err := NewPeer(certsOf(files), "node-0", 0, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	first := p.Leaf().SerialNumber
	if p.TrustedCAs() != 1 || !trusts(t, p, oldCA) || trusts(t, p, newCA) {
		t.Fatal("wrong trust at start")
	}

	// A renewed certificate from the same CA.
	oldCA.WriteNode(t, dir, "node-0", caFile)
	if p.Leaf().SerialNumber.Cmp(first) == 0 {
		t.Fatal("the renewed certificate was not loaded")
	}
	if !strings.Contains(logs.String(), "peer TLS credentials reloaded") {
		t.Fatalf("reload not logged:\n%s", logs.String())
	}

	// CA rotation: both CAs, then a certificate of the new one, then the
	// new CA alone.
	testcert.WriteBundle(t, caFile, oldCA, newCA)
	if p.TrustedCAs() != 2 || !trusts(t, p, newCA) || !trusts(t, p, oldCA) {
		t.Fatal("the bundle of two CAs was not loaded")
	}
	newCA.WriteNode(t, dir, "node-0", caFile)
	if err := p.Leaf().CheckSignatureFrom(newCA.Cert); err != nil {
		t.Fatal("the new CA's certificate was not loaded")
	}
	testcert.WriteBundle(t, caFile, newCA)
	if p.TrustedCAs() != 1 || trusts(t, p, oldCA) {
		t.Fatal("the old CA is still trusted")
	}
}

// TestPeerKeepsAGoodSetOverABadOne: a bad set on disk (a rotation caught
// half-way, a bad file) keeps the set in use, and is logged once.
func TestPeerKeepsAGoodSetOverABadOne(t *testing.T) {
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.crt")
	ca, other := testcert.NewCA(t, "CA"), testcert.NewCA(t, "other CA")
	testcert.WriteBundle(t, caFile, ca)
	files := ca.WriteNode(t, dir, "node-0", caFile)
	var logs bytes.Buffer
	p, err := NewPeer(certsOf(files), "node-0", 0, slog.New(slog.NewJSONHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	good := p.Leaf().SerialNumber

	now := time.Now()
	for _, tc := range []struct {
		name  string
		write func()
		log   string
	}{
		{"a certificate of a CA not in the bundle (certificates rotated before the bundle)", func() { other.WriteNode(t, dir, "node-0", caFile) }, "does not verify against the CA bundle"},
		{"a certificate for another node", func() { ca.WriteNode(t, dir, "node-1", caFile); rename(t, dir, "node-1", "node-0") }, "not for this node"},
		{"an expired certificate", func() {
			c, k := ca.Issue(t, devpki.Leaf{DNSNames: []string{"node-0"}, NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour)})
			testcert.WritePeer(t, dir, "node-0", caFile, c, k)
		}, "expired"},
		{"a certificate for servers only", func() {
			c, k := ca.Issue(t, devpki.Leaf{DNSNames: []string{"node-0"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			testcert.WritePeer(t, dir, "node-0", caFile, c, k)
		}, "for client authentication"},
		{"a key of another certificate", func() {
			_, k := ca.Issue(t, devpki.Leaf{DNSNames: []string{"node-0"}})
			testcert.ReplaceFile(t, files.Key, k)
		}, "private key does not match public key"},
		{"an empty bundle", func() { testcert.ReplaceFile(t, caFile, nil) }, "no CERTIFICATE block"},
		{"a bundle with a key in it", func() {
			testcert.ReplaceFile(t, caFile, append(ca.CertPEM(), "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"...))
		}, "PEM block 2 is a EC PRIVATE KEY"},
		{"a missing file", func() { testcert.ReplaceFile(t, caFile, ca.CertPEM()); removeFile(t, files.Cert) }, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs.Reset()
			tc.write()
			for range 2 {
				if got := p.Leaf().SerialNumber; got.Cmp(good) != 0 {
					t.Fatalf("serves serial %s, want the good %s", got, good)
				}
				if p.TrustedCAs() != 1 {
					t.Fatal("the bundle changed")
				}
			}
			if n := strings.Count(logs.String(), "keeping the current peer TLS credentials"); n != 1 || !strings.Contains(logs.String(), tc.log) {
				t.Fatalf("logged %d times, want once with %q:\n%s", n, tc.log, logs.String())
			}
			// Put the good set back for the next case.
			testcert.WriteBundle(t, caFile, ca)
			files = ca.WriteNode(t, dir, "node-0", caFile)
			good = p.Leaf().SerialNumber
		})
	}
}

func TestNewPeerRefusesABadSet(t *testing.T) {
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.crt")
	ca := testcert.NewCA(t, "CA")
	testcert.WriteBundle(t, caFile, ca)
	files := ca.WriteNode(t, dir, "node-0", caFile)
	if _, err := NewPeer(certsOf(files), "node-9", 0, slog.Default()); err == nil || !strings.Contains(err.Error(), `not for this node "node-9"`) {
		t.Fatalf("another node's certificate: err = %v", err)
	}
	if _, err := NewPeer(PeerFiles{Cert: files.Cert, Key: files.Key}, "node-0", 0, slog.Default()); err == nil {
		t.Fatal("no CA bundle accepted")
	}
	testcert.WriteBundle(t, caFile, testcert.NewCA(t, "other"))
	if _, err := NewPeer(certsOf(files), "node-0", 0, slog.Default()); err == nil || !strings.Contains(err.Error(), "unknown authority") {
		t.Fatalf("a certificate the bundle does not vouch for: err = %v", err)
	}
}

// TestPeerChecksAtMostEveryInterval: between checks the files are not
// read at all.
func TestPeerChecksAtMostEveryInterval(t *testing.T) {
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.crt")
	ca := testcert.NewCA(t, "CA")
	testcert.WriteBundle(t, caFile, ca)
	files := ca.WriteNode(t, dir, "node-0", caFile)
	p, err := NewPeer(certsOf(files), "node-0", time.Hour, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	first := p.Leaf().SerialNumber
	ca.WriteNode(t, dir, "node-0", caFile)
	if p.Leaf().SerialNumber.Cmp(first) != 0 {
		t.Fatal("reloaded before the interval")
	}
}

func certsOf(f testcert.PeerFiles) PeerFiles { return PeerFiles{Cert: f.Cert, Key: f.Key, CA: f.CA} }

// trusts reports whether p's pool vouches for a certificate ca issued.
func trusts(t *testing.T, p *Peer, ca *testcert.CA) bool {
	t.Helper()
	c, _ := ca.Issue(t, devpki.Leaf{DNSNames: []string{"probe"}})
	leaf, err := x509.ParseCertificate(pemBody(t, c))
	if err != nil {
		t.Fatal(err)
	}
	pool, _ := p.CAs()
	_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err == nil
}

// rename moves from's certificate and key over to's.
func rename(t *testing.T, dir, from, to string) {
	t.Helper()
	for _, ext := range []string{".key", ".crt"} {
		if err := os.Rename(filepath.Join(dir, from+ext), filepath.Join(dir, to+ext)); err != nil {
			t.Fatal(err)
		}
	}
}

func removeFile(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

func pemBody(t *testing.T, b []byte) []byte {
	t.Helper()
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatal("no PEM block")
	}
	return block.Bytes
}
