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
		"not both":                   {"--jwt-secret", "x", "--jwt-secret-file", "f"},
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
