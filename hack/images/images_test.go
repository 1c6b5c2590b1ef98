package images

import (
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const (
	repoRoot    = "../.."
	buildScript = "../build-image.sh"
	// versionVar is the variable the linker stamps (chatd/version).
	versionVar = "github.com/ringchat/ringchat/chatd/version.Version"
)

// requiredLabels are the OCI annotations every image carries; the ones
// mapped to an ARG must take their value from it (the build script passes
// them).
var requiredLabels = map[string]string{
	"org.opencontainers.image.title":       "",
	"org.opencontainers.image.description": "",
	"org.opencontainers.image.source":      "",
	"org.opencontainers.image.licenses":    "",
	"org.opencontainers.image.version":     "VERSION",
	"org.opencontainers.image.revision":    "REVISION",
	"org.opencontainers.image.created":     "CREATED",
}

type instruction struct {
	cmd  string // upper case
	args string
	line int
}

// parseDockerfile splits a Dockerfile into instructions: comments dropped,
// continuation lines joined.
func parseDockerfile(text string) []instruction {
	var out []instruction
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		} else if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue // an empty line or a comment inside a continued instruction
		}
		if s, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start})
		cur.Reset()
	}
	return out
}

// labelPairs parses LABEL's key="value" pairs.
func labelPairs(args string) (map[string]string, bool) {
	re := regexp.MustCompile(`^\s*([^\s=]+)=("(?:[^"\\]|\\.)*"|\S+)`)
	out := map[string]string{}
	for strings.TrimSpace(args) != "" {
		m := re.FindStringSubmatch(args)
		if m == nil {
			return nil, false
		}
		v := m[2]
		if strings.HasPrefix(v, `"`) {
			u, err := strconv.Unquote(v)
			if err != nil {
				return nil, false
			}
			v = u
		}
		out[m[1]] = v
		args = args[len(m[0]):]
	}
	return out, true
}

// dockerfiles returns the image name (the binary) and content of each
// hack/images/*.Dockerfile.
func dockerfiles(t *testing.T) map[string]string {
	t.Helper()
	paths, err := filepath.Glob("*.Dockerfile")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no Dockerfiles in hack/images (%v)", err)
	}
	out := map[string]string{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(p, ".Dockerfile")] = string(b)
	}
	return out
}

// TestDockerfiles: every image is FROM scratch (one stage, nothing
// pulled), runs as a numeric non-root user (runAsNonRoot can only check a
// numeric USER), starts its binary in exec form (no shell in scratch), and
// carries the OCI labels.
func TestDockerfiles(t *testing.T) {
	for name, text := range dockerfiles(t) {
		t.Run(name, func(t *testing.T) {
			ins := parseDockerfile(text)
			var froms, users, entrypoints []instruction
			args := map[string]bool{} // ARGs declared in the stage
			labels := map[string]string{}
			copiesBinary := false
			for _, in := range ins {
				switch in.cmd {
				case "FROM":
					froms = append(froms, in)
				case "USER":
					users = append(users, in)
				case "ENTRYPOINT":
					entrypoints = append(entrypoints, in)
				case "ARG":
					if len(froms) > 0 { // an ARG before FROM is not seen by the stage
						n, _, _ := strings.Cut(in.args, "=")
						args[n] = true
					}
				case "LABEL":
					pairs, ok := labelPairs(in.args)
					if !ok {
						t.Errorf("line %d: cannot parse LABEL %s", in.line, in.args)
					}
					for k, v := range pairs {
						labels[k] = v
					}
				case "COPY", "ADD":
					if in.cmd == "ADD" {
						t.Errorf("line %d: ADD (may fetch URLs); use COPY", in.line)
					}
					if f := strings.Fields(in.args); len(f) == 2 && f[0] == name {
						copiesBinary = true
					}
				case "RUN":
					t.Errorf("line %d: RUN in a FROM-scratch image (there is no shell)", in.line)
				}
			}
			if len(froms) != 1 || froms[0].args != "scratch" {
				t.Errorf("FROM %v, want exactly one FROM scratch", froms)
			}
			if len(users) == 0 {
				t.Errorf("no USER: the image would run as root")
			} else {
				u := users[len(users)-1]
				m := regexp.MustCompile(`^([0-9]+)(?::([0-9]+))?$`).FindStringSubmatch(u.args)
				switch {
				case m == nil:
					t.Errorf("line %d: USER %q, want a numeric uid[:gid] (Kubernetes' runAsNonRoot cannot check a name)", u.line, u.args)
				case m[1] == "0" || m[2] == "0":
					t.Errorf("line %d: USER %q runs as root", u.line, u.args)
				}
			}
			if len(entrypoints) != 1 || !strings.HasPrefix(entrypoints[0].args, "[") {
				t.Errorf("ENTRYPOINT %v, want one, in exec form (JSON array): scratch has no shell", entrypoints)
			}
			if !copiesBinary {
				t.Errorf("no COPY of %s, the binary hack/build-image.sh puts in the context", name)
			}
			for k, arg := range requiredLabels {
				v, ok := labels[k]
				switch {
				case !ok || v == "":
					t.Errorf("label %s missing or empty", k)
				case arg != "" && v != "${"+arg+"}":
					t.Errorf("label %s = %q, want ${%s}", k, v, arg)
				case arg != "" && !args[arg]:
					t.Errorf("label %s uses ARG %s, which the stage does not declare (after FROM)", k, arg)
				}
			}
			if labels["org.opencontainers.image.title"] != name {
				t.Errorf("title label %q, want %q", labels["org.opencontainers.image.title"], name)
			}
		})
	}
}

// scriptCode is build-image.sh without its comments.
func scriptCode(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(buildScript)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

// scriptTargets maps each binary the script knows to its make target.
func scriptTargets(t *testing.T, code string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^([a-z-]+)\) target=([a-z-]+) ;;$`).FindAllStringSubmatch(code, -1) {
		out[m[1]] = m[2]
	}
	return out
}

// TestBuildScript: hack/build-image.sh builds each binary through its
// Makefile target (so the version stamping is the Makefile's, defined
// once), knows every Dockerfile, and passes every build ARG the
// Dockerfiles declare.
func TestBuildScript(t *testing.T) {
	code := scriptCode(t)
	if regexp.MustCompile(`\bgo\s+build\b|-ldflags|version\.Version`).MatchString(code) {
		t.Errorf("build-image.sh builds or stamps a binary itself; use the Makefile's targets")
	}
	if !regexp.MustCompile(`\bmake\b[^\n]*"\$target"[^\n]*BIN="\$ctx"[^\n]*VERSION="\$version"`).MatchString(code) {
		t.Errorf(`build-image.sh does not run make "$target" BIN="$ctx" VERSION="$version"`)
	}
	targets := scriptTargets(t, code)
	images := dockerfiles(t)
	for name := range images {
		if targets[name] == "" {
			t.Errorf("hack/images/%s.Dockerfile: build-image.sh has no make target for %s", name, name)
		}
	}
	for name := range targets {
		if _, ok := images[name]; !ok {
			t.Errorf("build-image.sh knows %s, which has no hack/images/%s.Dockerfile", name, name)
		}
	}
	declared := map[string]bool{}
	for _, text := range images {
		for _, in := range parseDockerfile(text) {
			if in.cmd == "ARG" {
				n, _, _ := strings.Cut(in.args, "=")
				declared[n] = true
			}
		}
	}
	for arg := range declared {
		if !strings.Contains(code, "--build-arg "+arg+"=") {
			t.Errorf("the Dockerfiles declare ARG %s, which build-image.sh does not pass (--build-arg %s=…)", arg, arg)
		}
	}
	for _, want := range []string{"git -C \"$root\" rev-parse HEAD", "+%Y-%m-%dT%H:%M:%SZ"} {
		if !strings.Contains(code, want) {
			t.Errorf("build-image.sh lacks %q (the revision and created labels' values)", want)
		}
	}
}

// TestMakeTargetsStampTheVersion: each make target the script runs, given
// BIN and VERSION as the script gives them, builds a static binary named
// as its Dockerfile copies it, into BIN, stamped with VERSION (make -n:
// nothing is built).
func TestMakeTargetsStampTheVersion(t *testing.T) {
	targets := scriptTargets(t, scriptCode(t))
	if len(targets) == 0 {
		t.Fatal("no targets found in build-image.sh")
	}
	bin := t.TempDir()
	const version = "v0.0.0-image-test"
	for _, name := range slices.Sorted(maps.Keys(targets)) {
		cmd := exec.Command("make", "-n", "--no-print-directory", "-C", repoRoot, targets[name], "BIN="+bin, "VERSION="+version)
		cmd.Env = append(os.Environ(), "MAKEFLAGS=", "MAKELEVEL=")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("make -n %s: %v\n%s", targets[name], err, out)
			continue
		}
		s := string(out)
		for _, want := range []string{"CGO_ENABLED=0", " build ", "-X " + versionVar + "=" + version, "-o " + filepath.Join(bin, name) + " "} {
			if !strings.Contains(s, want) {
				t.Errorf("make %s (for the %s image) does not run %q:\n%s", targets[name], name, want, s)
			}
		}
	}
}
