// Command peercerts makes throwaway key material for a local chatd cluster:
// a CA, a certificate per node for the inter-node mutual TLS, and a gossip
// keyring. make cluster (hack/local-cluster.sh) runs it; so can a person
// trying a cluster by hand. Never use its output in production: the CA key
// sits next to the certificates, unprotected.
//
//	go run ./hack/peercerts -dir DIR [-days N] NODE-NAME...
//
// It writes, in DIR (created 0700):
//
//	ca.crt, ca.key          the CA, made on first use and reused after, so
//	                        that nodes added later trust the same CA
//	NODE-NAME.crt, .key     a certificate for each node, its DNS name the
//	                        node's name (chatd's --node-name), for server and
//	                        client authentication, valid for N days
//	gossip.keyring          one fresh 32-byte gossip key in base64, unless
//	                        the file exists
//
// chatd takes them as --peer-tls-ca-file DIR/ca.crt, --peer-tls-cert-file
// DIR/NODE-NAME.crt, --peer-tls-key-file DIR/NODE-NAME.key and
// --gossip-keyring-file DIR/gossip.keyring.
package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ringchat/ringchat/internal/devpki"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "peercerts:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fl := flag.NewFlagSet("peercerts", flag.ContinueOnError)
	dir := fl.String("dir", "", "directory to write into (required)")
	days := fl.Int("days", 30, "validity of the node certificates, in days (the CA gets ten times as long)")
	fl.Usage = func() {
		fmt.Fprintln(fl.Output(), "Usage: go run ./hack/peercerts -dir DIR [-days N] NODE-NAME...")
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		return err
	}
	names := fl.Args()
	switch {
	case *dir == "":
		return errors.New("-dir is required")
	case len(names) == 0:
		return errors.New("name at least one node")
	case *days < 1:
		return fmt.Errorf("-days must be at least 1, got %d", *days)
	}
	for _, n := range names {
		if n == "" || strings.ContainsAny(n, "/\\") || n == "ca" || n == "." || n == ".." {
			return fmt.Errorf("%q cannot be a node name here", n)
		}
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	validity := time.Duration(*days) * 24 * time.Hour
	ca, err := loadOrMakeCA(*dir, 10*validity)
	if err != nil {
		return err
	}
	for _, n := range names {
		crt, key, err := ca.IssueNode(n, validity)
		if err != nil {
			return err
		}
		// The key first: a node reloading between the two renames sees a
		// mismatched pair, which it refuses as a whole.
		if err := writeFile(filepath.Join(*dir, n+".key"), key, 0o600); err != nil {
			return err
		}
		if err := writeFile(filepath.Join(*dir, n+".crt"), crt, 0o644); err != nil {
			return err
		}
	}
	keyring := filepath.Join(*dir, "gossip.keyring")
	if _, err := os.Stat(keyring); errors.Is(err, fs.ErrNotExist) {
		k := make([]byte, 32)
		if _, err := rand.Read(k); err != nil {
			return err
		}
		if err := writeFile(keyring, []byte(base64.StdEncoding.EncodeToString(k)+"\n"), 0o600); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	fmt.Printf("peercerts: %d node certificate(s) for %s (valid %d days) in %s, signed by %s\n", len(names), strings.Join(names, ", "), *days, *dir, filepath.Join(*dir, "ca.crt"))
	return nil
}

// loadOrMakeCA reads dir's CA, or makes one.
func loadOrMakeCA(dir string, validity time.Duration) (*devpki.CA, error) {
	crtPath, keyPath := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	crt, errC := os.ReadFile(crtPath)
	key, errK := os.ReadFile(keyPath)
	if errC == nil && errK == nil {
		ca, err := devpki.LoadCA(crt, key)
		if err != nil {
			return nil, fmt.Errorf("%s: %w (remove ca.crt and ca.key to start over)", dir, err)
		}
		if time.Now().After(ca.Cert.NotAfter) {
			return nil, fmt.Errorf("the CA in %s expired on %s (remove ca.crt and ca.key to start over)", dir, ca.Cert.NotAfter.Format(time.DateOnly))
		}
		return ca, nil
	}
	if !errors.Is(errC, fs.ErrNotExist) || !errors.Is(errK, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s holds half a CA (ca.crt: %v; ca.key: %v)", dir, errC, errK)
	}
	ca, err := devpki.NewCA("ringchat throwaway CA", validity)
	if err != nil {
		return nil, err
	}
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		return nil, err
	}
	if err := writeFile(keyPath, keyPEM, 0o600); err != nil {
		return nil, err
	}
	return ca, writeFile(crtPath, ca.CertPEM(), 0o644)
}

// writeFile writes b next to path and renames it into place, so that a
// running chatd re-reading the file never sees half of it.
func writeFile(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
