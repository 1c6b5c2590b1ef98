// Package certs serves chatd's TLS certificates from files that may be
// replaced while chatd runs (a Kubernetes Secret volume updated by
// cert-manager, say), so that renewing a certificate needs no restart:
// the client listener's (Reloader) and the inter-node transport's, with
// the CA bundle peers are checked against (Peer).
package certs

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// DefaultCheckInterval is how often, at most, the files are looked at again:
// a handshake costs one stat per file at most that often.
const DefaultCheckInterval = 10 * time.Second

// Reloader holds a certificate and key pair loaded from two PEM files and
// loads them again when either file changes.
type Reloader struct {
	certFile, keyFile string
	log               *slog.Logger
	// CheckInterval bounds how often the files are looked at again.
	CheckInterval time.Duration

	mu        sync.Mutex
	cert      *tls.Certificate
	stamp     string // size and modification time of both files, as loaded
	checkedAt time.Time
	lastErr   string
}

// NewReloader loads the pair once; an unreadable or mismatched pair is an
// error, since a server that cannot complete any handshake should not start.
func NewReloader(certFile, keyFile string, log *slog.Logger) (*Reloader, error) {
	r := &Reloader{certFile: certFile, keyFile: keyFile, log: log, CheckInterval: DefaultCheckInterval}
	stamp, err := r.currentStamp()
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading the TLS certificate %s and key %s: %w", certFile, keyFile, err)
	}
	r.cert, r.stamp, r.checkedAt = &cert, stamp, time.Now()
	return r, nil
}

// GetCertificate is for tls.Config.GetCertificate.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checkedAt) >= r.CheckInterval {
		r.checkedAt = time.Now()
		r.reloadLocked()
	}
	return r.cert, nil
}

// TLSConfig is a server configuration that serves the reloaded pair.
func (r *Reloader) TLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate}
}

// reloadLocked loads the pair again when the files changed. A pair that does
// not load (caught half-written, or a key that does not match) keeps the
// previous one serving; the error is logged once.
func (r *Reloader) reloadLocked() {
	stamp, err := r.currentStamp()
	if err == nil && stamp == r.stamp {
		return
	}
	var cert tls.Certificate
	if err == nil {
		cert, err = tls.LoadX509KeyPair(r.certFile, r.keyFile)
	}
	if err != nil {
		if msg := err.Error(); msg != r.lastErr {
			r.lastErr = msg
			r.log.Error("keeping the current TLS certificate", "err", err)
		}
		return
	}
	r.cert, r.stamp, r.lastErr = &cert, stamp, ""
	r.log.Info("TLS certificate reloaded", "cert", r.certFile)
}

// currentStamp describes both files as they are now.
func (r *Reloader) currentStamp() (string, error) {
	var s string
	for _, f := range []string{r.certFile, r.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return "", fmt.Errorf("TLS file: %w", err)
		}
		s += fmt.Sprintf("%d@%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	return s, nil
}
