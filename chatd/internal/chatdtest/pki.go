package chatdtest

import (
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ringchat/ringchat/chatd/internal/testcert"
)

// PKI is the key material of a test cluster: a CA and its bundle file,
// a certificate per node, and a gossip keyring file, in a temporary
// directory. Every node of Cluster and ProcessCluster runs with it, as a
// production node must: mutual TLS between nodes and encrypted gossip.
// Rotation tests rewrite its files while the nodes run.
type PKI struct {
	t testing.TB
	// Dir holds every file.
	Dir string
	// CA signs the node certificates.
	CA *testcert.CA
	// CAFile is the CA bundle every node trusts (--peer-tls-ca-file).
	CAFile string
	// KeyringFile is the gossip keyring every node reads
	// (--gossip-keyring-file), one base64 key.
	KeyringFile string

	mu    sync.Mutex
	nodes map[string]testcert.PeerFiles
}

// NewPKI makes a CA and a gossip key for a test cluster.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	dir := t.TempDir()
	p := &PKI{t: t, Dir: dir, CA: testcert.NewCA(t, "chatdtest CA"), CAFile: filepath.Join(dir, "ca.crt"),
		KeyringFile: filepath.Join(dir, "gossip.keyring"), nodes: make(map[string]testcert.PeerFiles)}
	testcert.WriteBundle(t, p.CAFile, p.CA)
	testcert.ReplaceFile(t, p.KeyringFile, []byte(NewGossipKey(t)+"\n"))
	return p
}

// NewGossipKey returns a fresh 32-byte gossip key in base64, a line of a
// keyring file.
func NewGossipKey(t testing.TB) string {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(k)
}

// Node returns the files of the node called name, issuing its certificate
// on first use.
func (p *PKI) Node(name string) testcert.PeerFiles {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	f, ok := p.nodes[name]
	if !ok {
		f = p.CA.WriteNode(p.t, p.Dir, name, p.CAFile)
		p.nodes[name] = f
	}
	return f
}

// Issue gives the node called name a certificate signed by ca (valid
// for a day), replacing its files if it had some: a node that starts
// afterwards presents it. With trust, the node trusts those CAs (a bundle
// of its own) instead of the cluster's bundle.
func (p *PKI) Issue(name string, ca *testcert.CA, trust ...*testcert.CA) testcert.PeerFiles {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	bundle := p.CAFile
	if len(trust) > 0 {
		bundle = filepath.Join(p.Dir, name+"-ca.crt")
		testcert.WriteBundle(p.t, bundle, trust...)
	}
	f := ca.WriteNode(p.t, p.Dir, name, bundle)
	p.nodes[name] = f
	return f
}

// Flags returns the flags that give the node called name its certificate,
// the CA bundle and the gossip keyring.
func (p *PKI) Flags(name string) []string {
	p.t.Helper()
	return append(p.Node(name).Flags(), "--gossip-keyring-file", p.KeyringFile)
}

// WriteKeyring replaces the gossip keyring file with keys (base64, the
// primary first), as a rotation step does.
func (p *PKI) WriteKeyring(keys ...string) {
	p.t.Helper()
	var b []byte
	for _, k := range keys {
		b = append(b, k+"\n"...)
	}
	testcert.ReplaceFile(p.t, p.KeyringFile, b)
}

// Keyring returns the lines of the gossip keyring file.
func (p *PKI) Keyring() []string {
	p.t.Helper()
	b, err := os.ReadFile(p.KeyringFile)
	if err != nil {
		p.t.Fatal(err)
	}
	return strings.Fields(string(b))
}
