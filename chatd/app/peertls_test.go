package app_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ringchat/ringchat/chatd/admin"
	"github.com/ringchat/ringchat/chatd/deliverycheck"
	"github.com/ringchat/ringchat/chatd/internal/chatdtest"
	"github.com/ringchat/ringchat/chatd/internal/testcert"
	"github.com/ringchat/ringchat/chatd/internal/testtime"
	"github.com/ringchat/ringchat/chatd/rpc"
	"github.com/ringchat/ringchat/internal/devpki"
)

// reload is the clusters' --cluster-reload-interval in these tests: short,
// so that each rotation step is picked up quickly.
const reload = 100 * time.Millisecond

// stepTimeout bounds the wait for every node to apply a rotation step:
// a few reload intervals, with a margin for a loaded machine.
var stepTimeout = testtime.Bound(10 * time.Second)

// Metric series of the key material in use.
const (
	certExpiry     = "chatd_peer_tls_cert_expiry_timestamp_seconds"
	trustedCAs     = "chatd_peer_tls_trusted_cas"
	gossipKeys     = "chatd_gossip_keys"
	keyringApplied = `chatd_gossip_keyring_reloads_total{result="applied"}`
	certRefusals   = `chatd_transport_auth_failures_total{reason="certificate"}`
)

// underTraffic starts a checker on c (a subscriber on every node, two
// publishers), waits for traffic to flow, runs steps, keeps the traffic
// going until 20 more messages are acknowledged, and verifies that no
// acknowledged message was lost, duplicated or reordered.
func underTraffic(t *testing.T, c *chatdtest.Cluster, room string, steps func()) {
	t.Helper()
	k := deliverycheck.NewChecker(t, c.LiveURLs, room)
	wait := k.RunTraffic(3, 2, 1_000_000, 15*time.Millisecond)
	k.WaitAcked(20)
	before := k.Acked()
	steps()
	after := k.Acked()
	k.WaitAcked(after + 20)
	k.StopPublishing()
	wait()
	t.Logf("acknowledged: %d before the rotation, %d during it, %d after", before, after-before, k.Acked()-after)
	k.Verify()
}

// waitAll waits until series reads want on every node of c.
func waitAll(t *testing.T, c *chatdtest.Cluster, what, series string, want float64) {
	t.Helper()
	chatdtest.Eventually(t, stepTimeout, what, func() (bool, string) {
		for _, n := range c.Live() {
			if got := n.Metric(t, series); got != want {
				return false, fmt.Sprintf("%s: %s = %v, want %v", n.Name, series, got, want)
			}
		}
		return true, ""
	})
}

// rpcAddrs returns the inter-node address of every live node, by name.
func rpcAddrs(t *testing.T, c *chatdtest.Cluster) map[string]string {
	t.Helper()
	st, err := c.Live()[0].Status()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range st.Members {
		out[m.Name] = m.RPCAddr
	}
	return out
}

// probe opens a TLS connection to a node's inter-node port as a client
// presenting client, sends a hello as that client's node name, and returns
// the certificate the node served and the error reading the node's answer:
// nil when it answered (its answer refuses the target, a node called
// "nobody", but only a client it authenticated gets one).
func probe(t *testing.T, addr string, client *tls.Certificate) (*x509.Certificate, error) {
	t.Helper()
	d := &net.Dialer{Timeout: testtime.Timeout}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{
		MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, Certificates: []tls.Certificate{*client},
	})
	if err != nil {
		t.Fatalf("TLS to %s: %v", addr, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(testtime.Timeout))
	served := conn.ConnectionState().PeerCertificates[0]
	// The transport's hello (chatd/transport/doc.go): "RCT", version 2,
	// protocol version, label, name, address, target.
	name := client.Leaf.DNSNames[0]
	hello := []byte{'R', 'C', 'T', 2, byte(rpc.Version >> 8), byte(rpc.Version)}
	for _, f := range []string{"ringchat", name, "127.0.0.1:1", "nobody"} {
		hello = append(append(hello, byte(len(f))), f...)
	}
	if _, err := conn.Write(hello); err != nil {
		return served, err
	}
	_, err = io.ReadFull(conn, make([]byte, 3))
	return served, err
}

// clientCert issues a certificate for name from ca.
func clientCert(t *testing.T, ca *testcert.CA, name string) *tls.Certificate {
	t.Helper()
	c, k := ca.Issue(t, devpki.Leaf{DNSNames: []string{name}})
	cert, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return &cert
}

// renew writes, for every live node, a new certificate from ca valid until
// notAfter, and returns the new serial numbers by node.
func renew(t *testing.T, c *chatdtest.Cluster, ca *testcert.CA, notAfter time.Time) map[string]string {
	t.Helper()
	serials := map[string]string{}
	for _, n := range c.Live() {
		crt, key := ca.Issue(t, devpki.Leaf{DNSNames: []string{n.Name}, NotAfter: notAfter})
		f := c.PKI.Node(n.Name)
		testcert.WritePeer(t, filepath.Dir(f.Cert), n.Name, f.CA, crt, key)
		leaf, err := tls.X509KeyPair(crt, key)
		if err != nil {
			t.Fatal(err)
		}
		serials[n.Name] = leaf.Leaf.SerialNumber.Text(16)
	}
	return serials
}

// TestPeerCertificateRotationUnderTraffic replaces every node's certificate
// (same CA) while clients chat: each node takes its new certificate
// without a restart, the next connection to it is served the new one, and
// no acknowledged message is lost.
func TestPeerCertificateRotationUnderTraffic(t *testing.T) {
	c := chatdtest.StartCluster(t, 3, "--cluster-reload-interval", reload.String())
	underTraffic(t, c, "cert-rotation", func() {
		notAfter := time.Now().Add(48 * time.Hour).Truncate(time.Second)
		serials := renew(t, c, c.PKI.CA, notAfter)
		waitAll(t, c, "every node on its new certificate", certExpiry, float64(notAfter.Unix()))
		probeCert := clientCert(t, c.PKI.CA, "probe")
		for name, addr := range rpcAddrs(t, c) {
			served, err := probe(t, addr, probeCert)
			if got := served.SerialNumber.Text(16); got != serials[name] {
				t.Fatalf("%s serves certificate %s, want the renewed %s", name, got, serials[name])
			}
			// The probe's name is no node's, but its certificate is
			// valid: it gets as far as the target check.
			if err != nil {
				t.Fatalf("%s refused a valid certificate: %v", name, err)
			}
		}
	})
}

// TestPeerCARotationUnderTraffic moves a running cluster to a new CA in
// the three documented steps while clients chat: trust both CAs, give
// every node a certificate of the new one, trust the new one alone. The
// last step closes the streams still authenticated by old certificates
// (they reconnect with the new ones), a client holding an old-CA
// certificate is refused from then on, and no acknowledged message is
// lost.
func TestPeerCARotationUnderTraffic(t *testing.T) {
	c := chatdtest.StartCluster(t, 3, "--cluster-reload-interval", reload.String())
	oldCA, newCA := c.PKI.CA, testcert.NewCA(t, "next CA")
	oldClient, newClient := clientCert(t, oldCA, "probe"), clientCert(t, newCA, "probe")
	addrs := rpcAddrs(t, c)
	refusalsBefore := 0.0
	underTraffic(t, c, "ca-rotation", func() {
		testcert.WriteBundle(t, c.PKI.CAFile, oldCA, newCA)
		waitAll(t, c, "step 1: every node trusts both CAs", trustedCAs, 2)

		notAfter := time.Now().Add(72 * time.Hour).Truncate(time.Second)
		renew(t, c, newCA, notAfter)
		waitAll(t, c, "step 2: every node on a certificate of the new CA", certExpiry, float64(notAfter.Unix()))
		for _, n := range c.Live() {
			refusalsBefore += n.Metric(t, certRefusals)
		}

		testcert.WriteBundle(t, c.PKI.CAFile, newCA)
		waitAll(t, c, "step 3: every node trusts the new CA alone", trustedCAs, 1)
		for name, addr := range addrs {
			if _, err := probe(t, addr, oldClient); err == nil || !strings.Contains(err.Error(), "bad certificate") {
				t.Fatalf("%s let in a certificate of the old CA after the rotation: %v", name, err)
			}
			if _, err := probe(t, addr, newClient); err != nil {
				t.Fatalf("%s refused a certificate of the new CA: %v", name, err)
			}
		}
	})
	// The streams opened before step 2 were authenticated by old-CA
	// certificates: step 3 closed them, and the cluster carried on over
	// new ones (the traffic above needed them).
	refusals := -refusalsBefore
	for _, n := range c.Live() {
		refusals += n.Metric(t, certRefusals)
	}
	// One probe with the old certificate per node, plus the closed streams.
	t.Logf("certificate refusals after step 3: %v (%d of them the probes)", refusals, len(addrs))
	if probes := float64(len(addrs)); refusals < probes+1 {
		t.Fatalf("%v certificate refusals after step 3, want the %v probes and at least one stream of an old certificate closed", refusals, probes)
	}
	c.WaitConverged()
}

// TestGossipKeyRotationUnderTraffic rotates the gossip key of a running
// cluster in the three documented steps while clients chat: no member
// leaves or joins any node's view meanwhile, nothing acknowledged is lost,
// and at the end a node with only the new key joins, while one with only
// the old key cannot.
func TestGossipKeyRotationUnderTraffic(t *testing.T) {
	c := chatdtest.StartCluster(t, 3, "--cluster-reload-interval", reload.String())
	oldKey := c.PKI.Keyring()[0]
	newKey := chatdtest.NewGossipKey(t)
	views := map[string]uint64{}
	for _, n := range c.Live() {
		st, err := n.Status()
		if err != nil {
			t.Fatal(err)
		}
		views[n.Name] = st.ViewVersion
	}
	underTraffic(t, c, "gossip-rotation", func() {
		c.PKI.WriteKeyring(oldKey, newKey)
		waitAll(t, c, "step 1: every node holds both keys", gossipKeys, 2)
		c.PKI.WriteKeyring(newKey, oldKey)
		waitAll(t, c, "step 2: every node encrypts with the new key", keyringApplied, 2)
		c.PKI.WriteKeyring(newKey)
		waitAll(t, c, "step 3: every node holds the new key alone", gossipKeys, 1)
	})
	for _, n := range c.Live() {
		st, err := n.Status()
		if err != nil {
			t.Fatal(err)
		}
		if st.ViewVersion != views[n.Name] || len(st.Active) != 3 {
			t.Errorf("%s: view went from v%d to v%d, active %v: members came or went during the rotation", n.Name, views[n.Name], st.ViewVersion, st.Active)
		}
	}

	// The cluster speaks the new key only: a node with it joins (the
	// keyring file says newKey alone now)...
	c.AddNode()
	c.WaitConverged()
	// ...and one with only the old key does not.
	oldKeyring := filepath.Join(t.TempDir(), "old.keyring")
	writeFile(t, oldKeyring, oldKey+"\n")
	stale := &chatdtest.Node{Name: "stale", Server: chatdtest.StartWith(t, append([]string{"--allow-anonymous", "--node-name", "stale",
		"--gossip-addr", "127.0.0.1:0", "--rpc-addr", "127.0.0.1:0", "--gossip-profile", "local", "--rejoin-interval", "1s",
		"--join", c.Nodes[0].Gossip, "--drain-timeout", "5s", "--shutdown-timeout", "5s"}, c.PKI.Flags("stale")...),
		"--gossip-keyring-file", oldKeyring)}
	const cause = "not ready: no other member reachable: check the gossip key and cluster label"
	chatdtest.Eventually(t, stepTimeout, "the node with the old key explaining why it is not ready", func() (bool, string) {
		_, body := readyz(t, stale.Addr)
		return strings.HasPrefix(body, cause), body
	})
	for _, n := range c.Live() {
		st, err := n.Status()
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(st.Members, func(m admin.Member) bool { return m.Name == "stale" }) {
			t.Fatalf("%s lists the node with the old key", n.Name)
		}
	}
}

// TestClusterRefusesBadKeyMaterial: a cluster member does not start with
// key material no peer would accept, or that it cannot read.
func TestClusterRefusesBadKeyMaterial(t *testing.T) {
	pki := chatdtest.NewPKI(t)
	dir := t.TempDir()
	base := func(name string) []string {
		return []string{"--allow-anonymous", "--node-name", name, "--gossip-addr", "127.0.0.1:0", "--rpc-addr", "127.0.0.1:0", "--bootstrap"}
	}
	badKeyring := filepath.Join(dir, "bad.keyring")
	writeFile(t, badKeyring, pki.Keyring()[0]+"\nnot-a-key\n")
	rogue := testcert.NewCA(t, "rogue CA")
	rogueFiles := rogue.WriteNode(t, dir, "node-r", pki.CAFile)
	for _, tc := range []struct {
		name  string
		flags []string
		want  string
	}{
		{"a certificate for another node", append(base("node-x"), append(pki.Node("node-y").Flags(), "--gossip-keyring-file", pki.KeyringFile)...),
			`is for ["node-y"], not for this node "node-x"`},
		{"a certificate the bundle does not vouch for", append(base("node-r"), append(rogueFiles.Flags(), "--gossip-keyring-file", pki.KeyringFile)...),
			"does not verify against the CA bundle"},
		{"a missing keyring", append(base("node-a"), append(pki.Node("node-a").Flags(), "--gossip-keyring-file", filepath.Join(dir, "nope"))...),
			"read --gossip-keyring-file"},
		{"a bad keyring", append(base("node-a"), append(pki.Node("node-a").Flags(), "--gossip-keyring-file", badKeyring)...),
			"line 2: a 9-character line is neither base64 nor a key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := chatdtest.StartErr(t, tc.flags...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
