package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestFlagsEnvAndPrecedence(t *testing.T) {
	c, err := Load([]string{"--allow-anonymous", "--max-rooms", "7"}, env(map[string]string{
		"CHATD_MAX_ROOMS":      "3", // the flag wins
		"CHATD_HISTORY_SIZE":   "50",
		"CHATD_SEND_QUEUE":     "100",
		"CHATD_PING_INTERVAL":  "5s",
		"CHATD_EXPECTED_NODES": "3",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxRooms != 7 || c.HistorySize != 50 || c.PingInterval != 5*time.Second || c.ExpectedNodes != 3 || !c.AllowAnonymous {
		t.Fatalf("config = %+v", c)
	}
	if EnvName("max-text-bytes") != "CHATD_MAX_TEXT_BYTES" {
		t.Fatal(EnvName("max-text-bytes"))
	}
}

func TestValidationNamesTheFlag(t *testing.T) {
	cases := map[string][]string{
		"no way to authenticate":     {},
		"--max-text-bytes":           {"--allow-anonymous", "--max-text-bytes", "100000"},
		"--send-queue":               {"--allow-anonymous", "--send-queue", "10"},
		"--join needs":               {"--allow-anonymous", "--join", "a:1"},
		"--replication-factor":       {"--allow-anonymous", "--replication-factor", "0"},
		"--log-level":                {"--allow-anonymous", "--log-level", "loud"},
		"not both":                   {"--jwt-secret", "x", "--jwt-secret-file", "f"},
		"--gossip-profile":           {"--allow-anonymous", "--gossip-profile", "wan"},
		"are exclusive":              {"--allow-anonymous", "--expected-nodes", "3", "--expected-nodes-file", "f"},
		"--tls-key-file, or neither": {"--allow-anonymous", "--tls-cert-file", "c"},
		"needs --peer-tls-cert-file, --peer-tls-key-file, --peer-tls-ca-file, --gossip-keyring-file": {"--allow-anonymous", "--gossip-addr", ":7946"},
		"(--gossip-addr) needs --peer-tls-ca-file: inter-node traffic is mutual TLS": {"--allow-anonymous", "--gossip-addr", ":7946",
			"--peer-tls-cert-file", "c", "--peer-tls-key-file", "k", "--gossip-keyring-file", "g"},
		"--cluster-reload-interval must be positive": {"--allow-anonymous", "--cluster-reload-interval", "0s"},
	}
	for want, args := range cases {
		_, err := Load(args, env(nil), io.Discard)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load(%q) = %v, want an error mentioning %q", args, err, want)
		}
	}
	if _, err := Load(nil, env(map[string]string{"CHATD_MAX_ROOMS": "many"}), io.Discard); err == nil || !strings.Contains(err.Error(), "CHATD_MAX_ROOMS") {
		t.Errorf("bad env value error = %v", err)
	}
}

func TestVersionAndHelpNeedNoValidConfig(t *testing.T) {
	c, err := Load([]string{"--version"}, env(nil), io.Discard)
	if err != nil || !c.Version {
		t.Fatalf("--version: %v", err)
	}
	var out strings.Builder
	if _, err := Load([]string{"--help"}, env(nil), &out); !errors.Is(err, ErrHelp) {
		t.Fatalf("--help: %v", err)
	}
	if !strings.Contains(out.String(), "CHATD_GOSSIP_ADDR") {
		t.Fatal("help does not name the environment variables")
	}
}

func TestClusterMemberConfig(t *testing.T) {
	c, err := Load([]string{"--allow-anonymous", "--gossip-addr", ":7946", "--peer-tls-cert-file", "c", "--peer-tls-key-file", "k",
		"--peer-tls-ca-file", "ca"}, env(map[string]string{"CHATD_GOSSIP_KEYRING_FILE": "g", "CHATD_CLUSTER_RELOAD_INTERVAL": "3s"}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.PeerTLSCertFile != "c" || c.PeerTLSKeyFile != "k" || c.PeerTLSCAFile != "ca" || c.GossipKeyringFile != "g" || c.ClusterReloadInterval != 3*time.Second {
		t.Fatalf("config = %+v", c)
	}
	// Without --gossip-addr none of them is needed.
	if _, err := Load([]string{"--allow-anonymous"}, env(nil), io.Discard); err != nil {
		t.Fatal(err)
	}
}

// TestRemovedSettings: the shared-secret handshake and the one-key gossip
// flag are gone; a deployment that still sets them is told what replaced
// them instead of failing on an unknown flag or, worse, running with a
// secret it believes in and nobody reads.
func TestRemovedSettings(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{args: []string{"--cluster-secret-file", "/s"}, want: "--cluster-secret-file was removed: inter-node connections use mutual TLS"},
		{args: []string{"-cluster-insecure"}, want: "--cluster-insecure was removed"},
		{args: []string{"--gossip-key-file=/k"}, want: "--gossip-key-file was removed: use --gossip-keyring-file"},
		{env: map[string]string{"CHATD_CLUSTER_SECRET": "s3cret"}, want: "CHATD_CLUSTER_SECRET is set, but chatd no longer reads it"},
		{env: map[string]string{"CHATD_GOSSIP_KEY": "k3y"}, want: "CHATD_GOSSIP_KEY is set, but chatd no longer reads it: secrets are read from files only"},
		{env: map[string]string{"CHATD_CLUSTER_INSECURE": "true"}, want: "CHATD_CLUSTER_INSECURE is set"},
	} {
		_, err := Load(append([]string{"--allow-anonymous"}, tc.args...), env(tc.env), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Load(%q, %v) = %v, want %q", tc.args, tc.env, err, tc.want)
		}
		if err != nil && (strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "k3y")) {
			t.Errorf("the error shows the secret: %v", err)
		}
	}
	// A value that merely looks like a removed flag is not one.
	if _, err := Load([]string{"--allow-anonymous", "--node-name", "cluster-insecure"}, env(nil), io.Discard); err != nil {
		t.Fatal(err)
	}
}

// TestHelpMatchesTheDocs: docs/configuration.md shows `chatd --help`
// verbatim (with <hostname> for the default node name); this keeps it so.
func TestHelpMatchesTheDocs(t *testing.T) {
	doc, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	const start = "## `chatd --help`\n\n```\n"
	i := strings.Index(string(doc), start)
	if i < 0 {
		t.Fatal("docs/configuration.md has no `chatd --help` section")
	}
	block := string(doc)[i+len(start):]
	block = block[:strings.Index(block, "```")]

	var out strings.Builder
	if _, err := Load([]string{"--help"}, env(nil), &out); !errors.Is(err, ErrHelp) {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	got := strings.Replace(out.String(), fmt.Sprintf("(env CHATD_NODE_NAME) (default %q)", host), `(env CHATD_NODE_NAME) (default "<hostname>")`, 1)
	if got != block {
		t.Errorf("docs/configuration.md's `chatd --help` block differs from the output; replace it with:\n%s", got)
	}
}
