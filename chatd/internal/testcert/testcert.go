// Package testcert writes TLS certificates for tests: self-signed ones for
// the client listener, and CAs and node certificates for the inter-node
// transport.
package testcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ringchat/ringchat/internal/devpki"
)

// Write writes a fresh self-signed certificate for 127.0.0.1 with the given
// serial number, and its key, to dir/tls.crt and dir/tls.key, both with the
// modification time mtime (explicit, since two writes within the file
// system's timestamp granularity would otherwise look alike). It returns the
// certificate's PEM.
func Write(t testing.TB, dir string, serial int64, mtime time.Time) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "chatd-test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	WriteFile(t, filepath.Join(dir, "tls.crt"), certPEM, mtime)
	WriteFile(t, filepath.Join(dir, "tls.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), mtime)
	return certPEM
}

// WriteFile writes b to path with the modification time mtime.
func WriteFile(t testing.TB, path string, b []byte, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

// CA is a throwaway certificate authority for tests of the inter-node
// transport's mutual TLS (see internal/devpki).
type CA struct {
	*devpki.CA
}

// NewCA makes a CA valid for a day.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	ca, err := devpki.NewCA(name, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{CA: ca}
}

// PeerFiles are the three files a node's --peer-tls-* flags name.
type PeerFiles struct {
	Cert, Key, CA string
}

// Flags returns the chatd flags that name the files.
func (p PeerFiles) Flags() []string {
	return []string{"--peer-tls-cert-file", p.Cert, "--peer-tls-key-file", p.Key, "--peer-tls-ca-file", p.CA}
}

// Issue signs leaf and returns the certificate and key in PEM.
func (ca *CA) Issue(t testing.TB, leaf devpki.Leaf) (certPEM, keyPEM []byte) {
	t.Helper()
	c, k, err := ca.CA.Issue(leaf)
	if err != nil {
		t.Fatal(err)
	}
	return c, k
}

// WriteNode writes a certificate for node name (valid for a day) and its
// key to dir/<name>.crt and dir/<name>.key, and returns their paths with
// caFile as the bundle. The files are replaced atomically (written aside,
// then renamed), as a Kubernetes Secret volume is updated, so a node
// reloading them never reads half a file.
func (ca *CA) WriteNode(t testing.TB, dir, name, caFile string) PeerFiles {
	t.Helper()
	now := time.Now()
	c, k := ca.Issue(t, devpki.Leaf{DNSNames: []string{name}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)})
	return WritePeer(t, dir, name, caFile, c, k)
}

// WritePeer writes certPEM and keyPEM to dir/<name>.crt and dir/<name>.key
// (atomically, see WriteNode) and returns the three paths.
func WritePeer(t testing.TB, dir, name, caFile string, certPEM, keyPEM []byte) PeerFiles {
	t.Helper()
	p := PeerFiles{Cert: filepath.Join(dir, name+".crt"), Key: filepath.Join(dir, name+".key"), CA: caFile}
	// A reader between the two renames sees a mismatched pair, which it
	// refuses as a whole, keeping the pair it had.
	ReplaceFile(t, p.Key, keyPEM)
	ReplaceFile(t, p.Cert, certPEM)
	return p
}

// WriteBundle writes the certificates of cas, concatenated, to path
// (atomically): a CA bundle. Listing an old and a new CA is how a CA is
// rotated.
func WriteBundle(t testing.TB, path string, cas ...*CA) {
	t.Helper()
	var b []byte
	for _, ca := range cas {
		b = append(b, ca.CertPEM()...)
	}
	ReplaceFile(t, path, b)
}

// ReplaceFile writes b to a temporary file next to path and renames it
// over path, so that a reader sees the old content or the new, never a
// mix.
func ReplaceFile(t testing.TB, path string, b []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// sharedCA signs the certificates of Credentials; made once per test
// binary.
var sharedCA = sync.OnceValues(func() (*devpki.CA, error) { return devpki.NewCA("testcert shared CA", 24*time.Hour) })

// StaticCredentials are a node's certificate and the CAs it trusts, for
// tests that start inter-node transports directly (they satisfy
// transport.Credentials).
type StaticCredentials struct {
	Cert *tls.Certificate
	Pool *x509.CertPool
}

// Certificate returns the node's certificate.
func (c StaticCredentials) Certificate() (*tls.Certificate, error) { return c.Cert, nil }

// CAs returns the trusted CAs.
func (c StaticCredentials) CAs() (*x509.CertPool, error) { return c.Pool, nil }

// Credentials returns credentials for the node called name, signed by a
// CA shared by every caller in the test binary, so that any two nodes
// made by it trust each other.
func Credentials(t testing.TB, name string) StaticCredentials {
	t.Helper()
	ca, err := sharedCA()
	if err != nil {
		t.Fatal(err)
	}
	c, k, err := ca.IssueNode(name, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return StaticCredentials{Cert: &cert, Pool: pool}
}
