package app

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/ringchat/ringchat/chatd/membership"
)

// keyringWatch is what watch knows of --gossip-keyring-file.
type keyringWatch struct {
	path    string
	loaded  []byte // the content installed last
	lastErr string // the last error reported, so a bad file is reported once
}

// watch follows the cluster's key material until ctx ends: every interval
// it re-reads the gossip keyring and installs a changed one, and refreshes
// the gauges of the peer credentials (the credentials themselves are
// reloaded by certs.Peer, which the transport asks at every handshake and
// every re-verification). Its caller owns the goroutine.
func (c *clusterParts) watch(ctx context.Context, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.reloadKeyring(log)
			c.setCertGauges()
		}
	}
}

// setCertGauges shows the peer credentials in use (which reads the files
// again if it is time to).
func (c *clusterParts) setCertGauges() {
	c.metrics.PeerCertExpiry.Set(float64(c.creds.Leaf().NotAfter.Unix()))
	c.metrics.PeerTrustedCAs.Set(float64(c.creds.TrustedCAs()))
}

// reloadKeyring installs the keyring file's keys if the file changed. A
// file that cannot be read or parsed, or a keyring memberlist refuses,
// keeps the keys in use: the error is logged and counted once.
func (c *clusterParts) reloadKeyring(log *slog.Logger) {
	w := &c.keyring
	b, err := os.ReadFile(w.path)
	if err == nil && bytes.Equal(b, w.loaded) {
		return
	}
	var keys [][]byte
	if err == nil {
		keys, err = membership.ParseKeyring(b)
	}
	var change membership.KeyringChange
	if err == nil {
		change, err = c.members.SetKeys(keys)
	}
	if err != nil {
		if msg := err.Error(); msg != w.lastErr {
			w.lastErr = msg
			c.metrics.GossipKeyringReloads.WithLabelValues("error").Inc()
			log.Error("keeping the current gossip keyring", "file", w.path, "err", err)
		}
		return
	}
	w.loaded, w.lastErr = b, ""
	c.metrics.GossipKeyringReloads.WithLabelValues("applied").Inc()
	c.metrics.GossipKeys.Set(float64(c.members.KeyCount()))
	log.Info("gossip keyring reloaded", "file", w.path, "keys", len(keys),
		"added", change.Added, "removed", change.Removed, "primary_changed", change.PrimaryChanged)
}
