package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// It is 100 on every Linux architecture Go supports.
const clockTicks = 100

// ServerSample is one reading of the server's resources. Fields the source
// cannot provide are zero.
type ServerSample struct {
	At         time.Time
	RSSBytes   uint64
	CPUSeconds float64
	// From the Go runtime via /metrics, when reachable.
	HeapInuseBytes  uint64
	StackInuseBytes uint64
	Goroutines      uint64
	// RoomsInMemory is chatd_rooms_owned + chatd_rooms_replicated: the
	// rooms (and replica copies) the node holds in memory.
	RoomsInMemory uint64
	// The message store's group commits so far (chatd_store_sync_seconds
	// and chatd_store_sync_writes; zero without --data-dir).
	StoreSyncs        uint64
	StoreSyncSeconds  float64
	StoreSyncedWrites uint64
}

// serverStats samples the server under test from /proc/<pid> (RSS, CPU)
// and/or its /metrics endpoint (the same figures as process_* series, plus
// Go heap and goroutines).
type serverStats struct {
	pid        int
	metricsURL string
	source     string // "proc", "metrics", "proc+metrics" or "none"
	httpc      *http.Client
}

// newServerStats chooses the sources: /proc/<pid> when pid > 0 (or one is
// found listening on the target port, for a loopback target), /metrics
// when it answers.
func newServerStats(mode string, pid int, metricsURL, target string) (*serverStats, []string) {
	s := &serverStats{httpc: &http.Client{Timeout: 5 * time.Second}}
	var notes []string
	if mode == "none" {
		s.source = "none"
		return s, nil
	}
	if mode == "auto" || mode == "proc" {
		if pid <= 0 {
			if found, err := findListeningPID(target); err == nil && found != os.Getpid() {
				pid = found
				notes = append(notes, fmt.Sprintf("server pid %d found listening on %s", pid, target))
			}
		}
		if pid > 0 {
			if _, err := readProc(pid); err != nil {
				notes = append(notes, fmt.Sprintf("cannot read /proc/%d: %v", pid, err))
				pid = 0
			}
		}
		s.pid = pid
	}
	if mode == "auto" || mode == "metrics" {
		if metricsURL == "" {
			notes = append(notes, "no server metrics: chatd serves /metrics on its admin listener (--admin-listen), give its URL with --metrics-url")
		} else if _, err := s.scrape(metricsURL); err == nil {
			s.metricsURL = metricsURL
		} else {
			notes = append(notes, fmt.Sprintf("server metrics unavailable at %s: %v", metricsURL, err))
		}
	}
	switch {
	case s.pid > 0 && s.metricsURL != "":
		s.source = "proc+metrics"
	case s.pid > 0:
		s.source = "proc"
	case s.metricsURL != "":
		s.source = "metrics"
	default:
		s.source = "none"
		notes = append(notes, "no server resource figures: give --server-pid or make /metrics reachable")
	}
	return s, notes
}

// firstOf returns the first element of list, or "".
func firstOf(list []string) string {
	if len(list) == 0 {
		return ""
	}
	return list[0]
}

// sample reads the server's figures; RSS and CPU come from /proc when the
// pid is known (finer CPU resolution, no load on the server).
func (s *serverStats) sample() (ServerSample, error) {
	out := ServerSample{At: time.Now()}
	var errs []error
	if s.metricsURL != "" {
		m, err := s.scrape(s.metricsURL)
		if err != nil {
			errs = append(errs, err)
		} else {
			out.RSSBytes = uint64(m["process_resident_memory_bytes"])
			out.CPUSeconds = m["process_cpu_seconds_total"]
			out.HeapInuseBytes = uint64(m["go_memstats_heap_inuse_bytes"])
			out.StackInuseBytes = uint64(m["go_memstats_stack_inuse_bytes"])
			out.Goroutines = uint64(m["go_goroutines"])
			out.RoomsInMemory = uint64(m["chatd_rooms_owned"] + m["chatd_rooms_replicated"])
			out.StoreSyncs = uint64(m["chatd_store_sync_seconds_count"])
			out.StoreSyncSeconds = m["chatd_store_sync_seconds_sum"]
			out.StoreSyncedWrites = uint64(m["chatd_store_sync_writes_sum"])
		}
	}
	if s.pid > 0 {
		p, err := readProc(s.pid)
		if err != nil {
			errs = append(errs, err)
		} else {
			out.RSSBytes, out.CPUSeconds = p.RSSBytes, p.CPUSeconds
		}
	}
	return out, errors.Join(errs...)
}

// scrape fetches the metrics we use from a Prometheus text endpoint.
func (s *serverStats) scrape(u string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("metrics request: %w", err)
	}
	resp, err := s.httpc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return parseMetrics(resp.Body)
}

var wantedMetrics = map[string]bool{
	"process_resident_memory_bytes":  true,
	"process_cpu_seconds_total":      true,
	"go_memstats_heap_inuse_bytes":   true,
	"go_memstats_stack_inuse_bytes":  true,
	"go_goroutines":                  true,
	"chatd_rooms_owned":              true,
	"chatd_rooms_replicated":         true,
	"chatd_store_sync_seconds_count": true,
	"chatd_store_sync_seconds_sum":   true,
	"chatd_store_sync_writes_sum":    true,
}

// parseMetrics reads unlabelled series named in wantedMetrics.
func parseMetrics(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || !wantedMetrics[name] {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			out[name] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	if _, ok := out["process_resident_memory_bytes"]; !ok {
		return nil, errors.New("metrics have no process_resident_memory_bytes")
	}
	return out, nil
}

// procSample is what /proc/<pid> tells.
type procSample struct {
	RSSBytes   uint64
	CPUSeconds float64
}

// readProc reads the resident set size from /proc/<pid>/status and the CPU
// time (user + system) from /proc/<pid>/stat.
func readProc(pid int) (procSample, error) {
	var p procSample
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return p, fmt.Errorf("read process status: %w", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseUint(f[0], 10, 64)
				if err != nil {
					return p, fmt.Errorf("parse VmRSS %q: %w", rest, err)
				}
				p.RSSBytes = kb * 1024
			}
		}
	}
	cpu, err := procCPUSeconds(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return p, err
	}
	p.CPUSeconds = cpu
	return p, nil
}

// procCPUSeconds returns utime+stime of a /proc/<pid>/stat file in seconds.
func procCPUSeconds(path string) (float64, error) {
	stat, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read process stat: %w", err)
	}
	// The command name (field 2) may contain spaces; fields are counted
	// after its closing parenthesis. utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse %s: no command name", path)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("parse %s: too few fields", path)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse %s: bad utime/stime", path)
	}
	return float64(ut+st) / clockTicks, nil
}

// selfCPUSeconds is chatbench's own CPU time, to show whether the load
// generator itself was saturated.
func selfCPUSeconds() float64 {
	s, _ := procCPUSeconds("/proc/self/stat")
	return s
}

// findListeningPID finds the local process listening on the port of target
// (a loopback URL): the socket's inode from /proc/net/tcp{,6}, then the
// process holding it among /proc/*/fd. It needs permission to read other
// processes' fds (same user, or root).
func findListeningPID(target string) (int, error) {
	u, err := url.Parse(target)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", target, err)
	}
	host, portS, err := net.SplitHostPort(u.Host)
	if err != nil {
		return 0, fmt.Errorf("target %s has no port: %w", target, err)
	}
	if !isLoopbackHost(host) {
		return 0, errors.New("not a local target")
	}
	port, err := strconv.ParseUint(portS, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("port %q: %w", portS, err)
	}
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fl := strings.Fields(line)
			if len(fl) < 10 || fl[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, ok := strings.Cut(fl[1], ":")
			if p, err := strconv.ParseUint(hexPort, 16, 16); ok && err == nil && p == port {
				inodes["socket:["+fl[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("nothing listens on port %d", port)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/fd")
	for _, fdDir := range procs {
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(fdDir, fd.Name()))
			if err == nil && inodes[link] {
				return strconv.Atoi(filepath.Base(filepath.Dir(fdDir)))
			}
		}
	}
	return 0, fmt.Errorf("no readable process holds the socket listening on port %d", port)
}

// machineCPUSeconds returns the CPU time all CPUs spent busy (everything but
// idle and iowait) since boot, from /proc/stat. Compared with the server's
// and chatbench's own CPU it shows other load on the machine, which makes
// figures unreliable.
func machineCPUSeconds() (float64, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("read /proc/stat: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0, errors.New("parse /proc/stat: no cpu line")
	}
	var busy uint64
	for i, v := range f[1:] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse /proc/stat: %w", err)
		}
		// Columns: user nice system idle iowait irq softirq steal guest guest_nice.
		// guest time is already counted in user.
		if i == 3 || i == 4 || i >= 8 {
			continue
		}
		busy += n
	}
	return float64(busy) / clockTicks, nil
}
