package config

import (
	"errors"
	"io"
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
