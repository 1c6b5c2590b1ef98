package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"
)

// PeerFiles names the three PEM files of a node's inter-node credentials.
type PeerFiles struct {
	// Cert is the node's certificate, optionally followed by intermediate
	// CA certificates.
	Cert string
	// Key is the certificate's private key.
	Key string
	// CA is the bundle of CA certificates a peer's certificate must chain
	// to. Listing an old and a new CA lets the CA rotate without a restart.
	CA string
}

// Peer holds a node's inter-node TLS credentials: its certificate and key,
// and the CA bundle peers' certificates must chain to (chatd/transport asks
// for them at every handshake). When asked, it reads the three files again
// if CheckInterval has passed since it last did, and takes a new set only
// when the set is complete and consistent: the pair matches, the bundle
// holds certificates, and the node's certificate chains to the bundle, is
// valid now for both server and client authentication, and names the node.
// Otherwise the set in use stays and the problem is logged once, so that a
// rotation caught half-way, or a bad file, never takes a running node off
// the cluster.
type Peer struct {
	files PeerFiles
	node  string
	log   *slog.Logger
	// checkInterval bounds how often the files are read again.
	checkInterval time.Duration

	mu        sync.Mutex
	cert      *tls.Certificate
	pool      *x509.CertPool
	cas       int       // certificates in pool
	raw       [3][]byte // the files' contents as last loaded: cert, key, CA
	checkedAt time.Time
	lastErr   string
}

// NewPeer loads the set once and fails if it is not usable (see Peer):
// a node that no peer would accept, or that would accept nobody, must not
// start. nodeName is the name the certificate must carry as a DNS subject
// alternative name. checkInterval bounds how often the files are read
// again; 0 reads them at every call (tests).
func NewPeer(files PeerFiles, nodeName string, checkInterval time.Duration, log *slog.Logger) (*Peer, error) {
	if files.Cert == "" || files.Key == "" || files.CA == "" {
		return nil, errors.New("peer TLS needs a certificate, its key and a CA bundle")
	}
	p := &Peer{files: files, node: nodeName, log: log, checkInterval: checkInterval}
	raw, err := p.read()
	if err != nil {
		return nil, err
	}
	cert, pool, n, err := loadPeer(raw, files, nodeName, time.Now())
	if err != nil {
		return nil, err
	}
	p.cert, p.pool, p.cas, p.raw, p.checkedAt = cert, pool, n, raw, time.Now()
	return p, nil
}

// Certificate returns the node's certificate (chain and key) as of the
// last successful load, reading the files first if it is time to.
func (p *Peer) Certificate() (*tls.Certificate, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.maybeReloadLocked()
	return p.cert, nil
}

// CAs returns the pool of trusted CAs as of the last successful load,
// reading the files first if it is time to.
func (p *Peer) CAs() (*x509.CertPool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.maybeReloadLocked()
	return p.pool, nil
}

// TrustedCAs returns how many CA certificates the bundle in use holds (two
// while a CA rotation is under way).
func (p *Peer) TrustedCAs() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.maybeReloadLocked()
	return p.cas
}

// Leaf returns the node's certificate in use, parsed.
func (p *Peer) Leaf() *x509.Certificate {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.maybeReloadLocked()
	return p.cert.Leaf
}

func (p *Peer) maybeReloadLocked() {
	if time.Since(p.checkedAt) < p.checkInterval {
		return
	}
	p.checkedAt = time.Now()
	raw, err := p.read()
	if err == nil && p.sameRaw(raw) {
		return
	}
	var (
		cert *tls.Certificate
		pool *x509.CertPool
		n    int
	)
	if err == nil {
		cert, pool, n, err = loadPeer(raw, p.files, p.node, time.Now())
	}
	if err != nil {
		if msg := err.Error(); msg != p.lastErr {
			p.lastErr = msg
			p.log.Error("keeping the current peer TLS credentials", "err", err)
		}
		return
	}
	changed := make([]string, 0, 3)
	for i, f := range []string{p.files.Cert, p.files.Key, p.files.CA} {
		if !bytes.Equal(raw[i], p.raw[i]) {
			changed = append(changed, f)
		}
	}
	p.cert, p.pool, p.cas, p.raw, p.lastErr = cert, pool, n, raw, ""
	p.log.Info("peer TLS credentials reloaded", "changed", changed,
		"serial", cert.Leaf.SerialNumber.Text(16), "not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339), "trusted_cas", n)
}

// read reads the three files. Comparing contents rather than modification
// times catches every change, however quick, and ignores a rewrite of the
// same bytes.
func (p *Peer) read() ([3][]byte, error) {
	var raw [3][]byte
	for i, f := range []string{p.files.Cert, p.files.Key, p.files.CA} {
		b, err := os.ReadFile(f)
		if err != nil {
			return raw, fmt.Errorf("peer TLS: %w", err)
		}
		raw[i] = b
	}
	return raw, nil
}

// sameRaw reports whether raw is what is loaded, byte for byte.
func (p *Peer) sameRaw(raw [3][]byte) bool {
	for i := range raw {
		if !bytes.Equal(raw[i], p.raw[i]) {
			return false
		}
	}
	return true
}

// loadPeer parses and checks a set of files' contents (see Peer) and
// returns the certificate, the pool and the number of CAs in it.
func loadPeer(raw [3][]byte, files PeerFiles, node string, now time.Time) (*tls.Certificate, *x509.CertPool, int, error) {
	cert, err := tls.X509KeyPair(raw[0], raw[1])
	if err != nil {
		return nil, nil, 0, fmt.Errorf("peer TLS: certificate %s and key %s: %w", files.Cert, files.Key, err)
	}
	pool, n, err := parseBundle(raw[2])
	if err != nil {
		return nil, nil, 0, fmt.Errorf("peer TLS: CA bundle %s: %w", files.CA, err)
	}
	leaf := cert.Leaf
	if !slices.Contains(leaf.DNSNames, node) {
		return nil, nil, 0, fmt.Errorf("peer TLS: certificate %s is for %q, not for this node %q (its DNS names must include the node name)", files.Cert, leaf.DNSNames, node)
	}
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, nil, 0, fmt.Errorf("peer TLS: certificate %s: intermediate: %w", files.Cert, err)
		}
		inter.AddCert(c)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			return nil, nil, 0, fmt.Errorf("peer TLS: certificate %s does not verify against the CA bundle %s for %s (peers would refuse it): %w", files.Cert, files.CA, usageName(usage), err)
		}
	}
	return &cert, pool, n, nil
}

// parseBundle parses every CERTIFICATE block of a PEM bundle; unlike
// CertPool.AppendCertsFromPEM it says which block is bad.
func parseBundle(b []byte) (*x509.CertPool, int, error) {
	pool := x509.NewCertPool()
	n := 0
	for i := 1; ; i++ {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, 0, fmt.Errorf("PEM block %d is a %s, want CERTIFICATE", i, block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, 0, fmt.Errorf("PEM block %d: %w", i, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, 0, errors.New("no CERTIFICATE block")
	}
	return pool, n, nil
}

func usageName(u x509.ExtKeyUsage) string {
	if u == x509.ExtKeyUsageServerAuth {
		return "server authentication"
	}
	return "client authentication"
}
