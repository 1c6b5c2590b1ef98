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

func TestRemovedSecretSettings(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{args: []string{"--allow-anonymous", "--admin-token", "x"}, want: "--admin-token was removed: put the token in a file and pass --admin-token-file"},
		{args: []string{"--allow-anonymous", "-admin-token=x"}, want: "--admin-token was removed"},
		{args: []string{"--jwt-secret", "0123456789abcdef0123456789abcdef"}, want: "--jwt-secret was removed: put the secret in a file and pass --jwt-secret-file"},
		{args: []string{"--allow-anonymous"}, env: map[string]string{"CHATD_ADMIN_TOKEN": "x"}, want: "CHATD_ADMIN_TOKEN is set, but chatd no longer reads it"},
		{args: []string{"--allow-anonymous"}, env: map[string]string{"CHATD_JWT_SECRET": "x"}, want: "CHATD_JWT_SECRET is set, but chatd no longer reads it"},
	} {
		_, err := Load(tc.args, env(tc.env), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Load(%q, %v) = %v, want an error containing %q", tc.args, tc.env, err, tc.want)
		}
		if err != nil && (strings.Contains(err.Error(), "0123456789abcdef") || strings.Contains(err.Error(), "=x")) {
			t.Errorf("the error repeats the secret: %v", err)
		}
	}
}

func TestAdminListenerRules(t *testing.T) {
	ok := [][]string{
		{"--admin-listen", "127.0.0.1:9090"},
		{"--admin-listen", "[::1]:9090"},
		{"--admin-listen", "localhost:9090"},
		{"--admin-listen", "127.0.0.1:0"},
		{"--admin-listen", ":9090", "--admin-token-file", "/t"},
		{"--admin-listen", "0.0.0.0:9090", "--admin-token-file", "/t", "--metrics-require-token"},
	}
	for _, args := range ok {
		if _, err := Load(append([]string{"--allow-anonymous"}, args...), env(nil), io.Discard); err != nil {
			t.Errorf("Load(%q): %v", args, err)
		}
	}
	bad := map[string][]string{
		"is not a loopback address: an admin listener reachable from other machines needs --admin-token-file": {"--admin-listen", ":9090"},
		"--admin-listen 0.0.0.0:9090 is not a loopback address":                                               {"--admin-listen", "0.0.0.0:9090"},
		"--admin-listen 10.1.2.3:9090 is not a loopback":                                                      {"--admin-listen", "10.1.2.3:9090"},
		"--admin-listen chat.example:9090 is not a loopback":                                                  {"--admin-listen", "chat.example:9090"},
		"--admin-token-file needs --admin-listen":                                                             {"--admin-token-file", "/t"},
		"--api-key-file needs --admin-listen":                                                                 {"--api-key-file", "/k"},
		"--metrics-require-token needs --admin-token-file":                                                    {"--admin-listen", "127.0.0.1:1", "--metrics-require-token"},
		"--admin-listen must differ from --listen":                                                            {"--admin-listen", "127.0.0.1:8080"},
		"want host:port": {"--admin-listen", "9090"},
	}
	for want, args := range bad {
		_, err := Load(append([]string{"--allow-anonymous"}, args...), env(nil), io.Discard)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load(%q) = %v, want an error containing %q", args, err, want)
		}
	}
}

func TestTrustedProxiesAndRoomCap(t *testing.T) {
	c, err := Load([]string{"--allow-anonymous", "--trusted-proxies", " 10.0.0.0/8, 192.168.1.7 ,::ffff:172.16.0.1,2001:db8::/32", "--trusted-proxy-header", "forwarded"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseTrustedProxies(c.TrustedProxies)
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, p := range got {
		s = append(s, p.String())
	}
	if strings.Join(s, " ") != "10.0.0.0/8 192.168.1.7/32 172.16.0.1/32 2001:db8::/32" || c.TrustedProxyHeader != "forwarded" || c.MaxRoomsPerNode != 100000 {
		t.Fatalf("prefixes %v, header %q, room cap %d", s, c.TrustedProxyHeader, c.MaxRoomsPerNode)
	}
	for want, args := range map[string][]string{
		`--trusted-proxies: "10.0.0.0/33" is not a CIDR`:              {"--trusted-proxies", "10.0.0.0/8,10.0.0.0/33"},
		`--trusted-proxies: "proxy.local" is not an IP address`:       {"--trusted-proxies", "proxy.local"},
		"--trusted-proxy-header must be x-forwarded-for or forwarded": {"--trusted-proxy-header", "x-real-ip"},
		"--max-rooms-per-node must not be negative":                   {"--max-rooms-per-node", "-1"},
		"--auth-reload-interval must be positive":                     {"--auth-reload-interval", "0s"},
	} {
		_, err := Load(append([]string{"--allow-anonymous"}, args...), env(nil), io.Discard)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Load(%q) = %v, want an error containing %q", args, err, want)
		}
	}
	if _, err := Load([]string{"--jwt-jwks-file", "/keys.json"}, env(nil), io.Discard); err != nil {
		t.Errorf("a JWKS file alone is a way to authenticate: %v", err)
	}
}
