// Command chatbench is ringchat's load generator. It drives chatd with
// many WebSocket connections in one of its scenarios (idle, fanout, rooms,
// storm, throughput, crossnode; fill, history and ready for durable
// history; calibrate measures the loopback write floor without a server),
// checks that every message arrives exactly once and in order, and reports
// throughput, publish→receive and send→ack latency, history page latency,
// restart times and the server's memory and CPU. See docs/benchmarks.md
// for the figures and how they were taken.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ringchat/ringchat/chatd/bench"
)

// Exit codes (stable).
const (
	exitOK        = 0 // the run completed and every message was accounted for
	exitFailure   = 1 // setup failed, or connections failed, were closed by the server, or did not drain
	exitUsage     = 2 // bad command line
	exitIntegrity = 3 // a message was lost, duplicated or reordered, or a history page was wrong
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// common holds the flags every scenario has.
type common struct {
	urls       urlList
	opts       bench.Options
	json       bool
	quiet      bool
	serverPID  int
	statsMode  string
	metricsURL urlList
	cpuProfile string
}

type urlList []string

func (u *urlList) String() string { return strings.Join(*u, ",") }
func (u *urlList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*u = append(*u, s)
		}
	}
	return nil
}

// floatList is a comma-separated list of rates; k and M suffixes allowed.
type floatList []float64

func (f *floatList) String() string {
	var parts []string
	for _, v := range *f {
		parts = append(parts, strconv.FormatFloat(v, 'f', -1, 64))
	}
	return strings.Join(parts, ",")
}

func (f *floatList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		x, err := parseRate(strings.TrimSpace(s))
		if err != nil {
			return err
		}
		*f = append(*f, x)
	}
	return nil
}

// rateFlag is a float flag that accepts k and M suffixes (500k, 1.2M).
type rateFlag struct{ v *float64 }

func (r rateFlag) String() string {
	if r.v == nil {
		return "0"
	}
	return strconv.FormatFloat(*r.v, 'f', -1, 64)
}
func (r rateFlag) Set(s string) error {
	x, err := parseRate(s)
	if err != nil {
		return err
	}
	*r.v = x
	return nil
}

func parseRate(s string) (float64, error) {
	mult := 1.0
	switch {
	case strings.HasSuffix(s, "k"), strings.HasSuffix(s, "K"):
		mult, s = 1e3, s[:len(s)-1]
	case strings.HasSuffix(s, "M"):
		mult, s = 1e6, s[:len(s)-1]
	}
	x, err := strconv.ParseFloat(s, 64)
	if err != nil || x < 0 {
		return 0, fmt.Errorf("invalid rate %q", s)
	}
	return x * mult, nil
}

func (c *common) register(fs *flag.FlagSet) {
	fs.Var(&c.urls, "url", "chatd WebSocket URL; repeat or comma-separate for several nodes (default ws://127.0.0.1:8080/ws)")
	fs.BoolVar(&c.opts.AllowRemote, "allow-remote", false, "allow non-loopback targets (only servers you may load)")
	fs.StringVar(&c.opts.TokenSecretFile, "token-secret-file", "", "file holding chatd's HS256 secret (the one --jwt-secret-file names): each connection says hello with a JWT minted for its user (sub; exp 24h; no rooms claim) instead of an anonymous name, so chatd can run without --allow-anonymous")
	fs.IntVar(&c.opts.SourceAddrs, "source-addrs", 0, fmt.Sprintf("spread connections round robin over N loopback source addresses 127.0.0.2 … 127.0.0.(N+1) (at most %d), so chatd's per-IP cap (--max-connections-per-ip, 1000) holds: e.g. 20 for 15,000 connections; loopback targets only; 0: the kernel's choice", bench.MaxSourceAddrs))
	fs.IntVar(&c.serverPID, "server-pid", 0, "chatd process to read RSS and CPU from (/proc/<pid>); default: the local process listening on the first URL's port")
	fs.StringVar(&c.statsMode, "server-stats", "auto", "server figures: auto (/proc when the pid is known, plus /metrics), proc, metrics, none")
	fs.Var(&c.metricsURL, "metrics-url", "each node's metrics endpoint, in --url order: chatd serves /metrics on its admin listener, e.g. http://127.0.0.1:9090/metrics for --admin-listen 127.0.0.1:9090 (repeat or comma-separate)")
	fs.IntVar(&c.opts.DialConcurrency, "dial-concurrency", 64, "connections opened in parallel")
	fs.DurationVar(&c.opts.DialTimeout, "dial-timeout", 15*time.Second, "limit for one connection's upgrade, hello and join")
	fs.DurationVar(&c.opts.Warmup, "warmup", 2*time.Second, "traffic before measuring (checked for loss, excluded from figures)")
	fs.DurationVar(&c.opts.Drain, "drain", 10*time.Second, "wait at most this long for the last messages after publishing stops")
	fs.IntVar(&c.opts.TextSize, "text-size", 64, "message text length in bytes (at least 32: it carries the send timestamp)")
	fs.DurationVar(&c.opts.Tick, "tick", 5*time.Millisecond, "publisher scheduling period: each tick sends the messages due, back to back")
	fs.BoolVar(&c.json, "json", false, "print the report as JSON on stdout")
	fs.BoolVar(&c.quiet, "quiet", false, "no progress lines on stderr")
	fs.StringVar(&c.cpuProfile, "cpu-profile", "", "write chatbench's own CPU profile to this file (to check the load generator is not the bottleneck)")
}

// check validates the flags that do not depend on the scenario; its error
// is a usage error.
func (c *common) check() error {
	if err := bench.CheckSourceAddrs(c.opts.SourceAddrs, c.opts.AllowRemote, c.urls); err != nil {
		return err
	}
	return nil
}

func (c *common) finish(stderr io.Writer) bench.Options {
	o := c.opts
	o.URLs = c.urls
	if len(o.URLs) == 0 {
		o.URLs = []string{"ws://127.0.0.1:8080/ws"}
	}
	o.ServerPID, o.Stats, o.MetricsURLs = c.serverPID, c.statsMode, c.metricsURL
	if !c.quiet {
		o.Progress = stderr
	}
	return o
}

type scenario struct {
	name    string
	summary string
	details string
	setup   func(fs *flag.FlagSet, c *common) func(ctx context.Context) (*bench.Report, error)
}

var scenarios = []scenario{
	{
		name:    "idle",
		summary: "open N idle connections over M rooms; report server memory per connection",
		details: `Opens --connections connections (round robin over --rooms rooms and the
URLs), waits --hold, and reports the server's RSS growth per connection
(from /proc/<pid>, or process_resident_memory_bytes from /metrics) and the
Go heap, stacks and goroutines when /metrics is reachable. Use a freshly
started server for each run.`,
		setup: func(fs *flag.FlagSet, c *common) func(context.Context) (*bench.Report, error) {
			var cfg bench.IdleConfig
			fs.IntVar(&cfg.Connections, "connections", 1000, "connections to open")
			fs.IntVar(&cfg.Rooms, "rooms", 100, "rooms to spread them over")
			fs.DurationVar(&cfg.Hold, "hold", 10*time.Second, "how long to hold them open before measuring")
			fs.IntVar(&cfg.ReadBuffer, "read-buffer", 1024, "client read buffer per connection")
			return func(ctx context.Context) (*bench.Report, error) {
				rb := cfg.ReadBuffer
				cfg.Options = c.finish(fs.Output())
				cfg.ReadBuffer = rb
				return bench.Idle(ctx, cfg)
			}
		},
	},
	{
		name:    "fanout",
		summary: "S subscribers in one room, a publisher at stepped rates until delivery falls behind",
		details: `Rates are deliveries per second (publish rate × subscribers). Each step runs
--step-duration; --rule says when a step is "behind":
  legacy   deliveries or publishes under 95% of the target, or p99 above
           --max-p99 (the default rule)
  sustain  issue 17's many-sender rule: deliveries or publishes under 97%
           of the target, p99 above --max-p99 (the issue says 500ms), or
           p50 growing within the step: the second half's p50 above
           max(1.5 × the first half's, the first half's + 2ms), as a
           growing queue shows
and under both, a subscriber disconnected or a send refused. The report
gives each step's p50 of the messages sent in its first and second half.
Stepping stops after the first step behind (unless --all-steps). The
publisher never has more than --max-inflight messages not yet received by
every subscriber, so a saturated server is measured, not overflowed.
Against chatd's production rate limit (20 frames/s per connection) each
publisher must stay under 20 messages/s: 1M deliveries/s in a room of
1000 is 1000 messages/s, 8/s each for 125 publishers; a warning says when
a step asks more (chatd would refuse the excess with rate_limited).`,
		setup: func(fs *flag.FlagSet, c *common) func(context.Context) (*bench.Report, error) {
			var cfg bench.FanoutConfig
			var rates floatList
			fs.IntVar(&cfg.Subscribers, "subscribers", 1000, "subscribers in the room")
			fs.IntVar(&cfg.Publishers, "publishers", 1, "publishing connections: 1 is an extra connection that only publishes; more are that many of the subscribers, sharing the rate (a room where many members talk)")
			fs.Var(&rates, "rates", "explicit steps, deliveries/s, comma-separated (e.g. 500k or 100k,200k); overrides start/step/max")
			cfg.StartRate, cfg.StepRate, cfg.MaxRate = 100e3, 100e3, 3e6
			fs.Var(rateFlag{&cfg.StartRate}, "start-rate", "first step, deliveries/s")
			fs.Var(rateFlag{&cfg.StepRate}, "step-rate", "increment between steps, deliveries/s")
			fs.Var(rateFlag{&cfg.MaxRate}, "max-rate", "last step, deliveries/s")
			fs.DurationVar(&cfg.StepDuration, "step-duration", 5*time.Second, "length of each step")
			fs.IntVar(&cfg.MaxInflight, "max-inflight", 1000, "messages published but not yet received by every subscriber, at most")
			fs.DurationVar(&cfg.MaxP99, "max-p99", 100*time.Millisecond, "a step whose p99 exceeds this is behind (issue 17's sustain rule: 500ms)")
			fs.Func("rule", "step rule: legacy (95% of the target, p99 ≤ --max-p99) or sustain (97%, p99 ≤ --max-p99, p50 not growing within the step) (default legacy)", func(v string) error {
				r, err := bench.ParseStepRule(v)
				cfg.Rule = r
				return err
			})
			fs.BoolVar(&cfg.AllSteps, "all-steps", false, "run every step even after one fell behind")
			fs.DurationVar(&cfg.WriteFloor, "write-floor", 0, "the cost of one loopback write, as calibrate printed it (e.g. 1.8µs): each step then reports p50 and p99 as multiples of subscribers × write-floor")
			fs.Float64Var(&cfg.ServerRate, "server-rate", 20, "frames/s the server allows one connection (chatd's --rate, 20 by default): a step asking more messages/s of a publisher is warned about; 0: no check")
			return func(ctx context.Context) (*bench.Report, error) {
				cfg.Options = c.finish(fs.Output())
				cfg.Rates = rates
				return bench.Fanout(ctx, cfg)
			}
		},
	},
	{
		name:    "rooms",
		summary: "C connections in rooms of K, each publishing R msg/s",
		details: `Every connection joins one room and publishes into it; every member receives
every message of its room (its own included). Reports deliveries/s,
publish→receive and send→ack latency and server CPU over --duration after
--warmup. --total-rate fixes the messages/s of all connections together
(shared equally) instead of --rate per connection: the form the durable
send→ack figures use (start chatd with --data-dir for those).`,
		setup: func(fs *flag.FlagSet, c *common) func(context.Context) (*bench.Report, error) {
			var cfg bench.RoomsConfig
			fs.IntVar(&cfg.Connections, "connections", 5000, "connections (a multiple of --room-size)")
			fs.IntVar(&cfg.RoomSize, "room-size", 5, "members per room")
			fs.Var(rateFlag{&cfg.Rate}, "rate", "messages per second per connection")
			cfg.Rate = 1
			fs.Var(rateFlag{&cfg.TotalRate}, "total-rate", "messages per second of all connections together (e.g. 10k); overrides --rate")
			fs.DurationVar(&cfg.Duration, "duration", 30*time.Second, "measured window")
			fs.IntVar(&cfg.Schedulers, "schedulers", 4, "publishing goroutines")
			fs.DurationVar(&cfg.MaxP99, "max-p99", time.Second, "the run is behind when p99 exceeds this")
			fs.DurationVar(&cfg.WriteFloor, "write-floor", 0, "the cost of one loopback write, as calibrate printed it (e.g. 1.8µs): the report then gives p50 and p99 as multiples of room-size × write-floor")
			return func(ctx context.Context) (*bench.Report, error) {
				cfg.Options = c.finish(fs.Output())
				return bench.Rooms(ctx, cfg)
			}
		},
	},
	{
		name:    "storm",
		summary: "C connections joining rooms of K as fast as they can, then all reconnecting and resuming at once",
		details: `Opens --connections connections (--dial-concurrency at a time), each a user of
its own joining one room of --room-size, and reports connections/s and the
presence frames the joins caused (counted until none arrived for --presence-quiet).
With --reconnect (the default) every connection then closes and all
reconnect at once, each resuming its room (join with since and epoch), as
every client of a node does after a deploy or a node loss: the report says
how long until all were back, how many recovered, and the presence frames
of the storm.`,
		setup: func(fs *flag.FlagSet, c *common) func(context.Context) (*bench.Report, error) {
			var cfg bench.StormConfig
			fs.IntVar(&cfg.Connections, "connections", 10000, "connections to open")
			fs.IntVar(&cfg.RoomSize, "room-size", 100, "connections (users) per room")
			fs.BoolVar(&cfg.Reconnect, "reconnect", true, "close every connection, then reconnect and resume them all at once")
			fs.DurationVar(&cfg.Quiet, "presence-quiet", time.Second, "presence traffic is over once no presence frame arrived for this long")
			return func(ctx context.Context) (*bench.Report, error) {
				cfg.Options = c.finish(fs.Output())
				return bench.Storm(ctx, cfg)
			}
		},
	},
	{
		name:    "throughput",
		summary: "R rooms, one pipelining publisher each, stepped message rates: max sustained acked msgs/s",
		details: `Each room has one connection that publishes into it (at most --window sends
written and not yet acked) and reads its messages back. Rates are messages
per second over all rooms. A step is sustained when publishes and acks keep
up with the target (95%), send→ack p99 (and publish→receive p99) stay under
--max-p99, no send is refused and no connection is closed; stepping stops
after the first step that is not (unless --all-steps). The report gives
the highest acked rate of a sustained step. Against chatd with --data-dir
this is the durable publish rate: group commit lets many messages share one
fsync.`,
		setup: func(fs *flag.FlagSet, c *common) func(context.Context) (*bench.Report, error) {
			var cfg bench.ThroughputConfig
			var rates floatList
			fs.IntVar(&cfg.Rooms, "rooms", 1000, "rooms, one publishing connection each")
			fs.IntVar(&cfg.Window, "window", 16, "sends in flight (written, not yet acked) per connection, at most")
			fs.Var(&rates, "rates", "explicit steps, messages/s, comma-separated (e.g. 10k,20k); overrides start/step/max")
			cfg.StartRate, cfg.StepRate, cfg.MaxRate = 10e3, 10e3, 200e3
			fs.Var(rateFlag{&cfg.StartRate}, "start-rate", "first step, messages/s")
			fs.Var(rateFlag{&cfg.StepRate}, "step-rate", "increment between steps, messages/s")
			fs.Var(rateFlag{&cfg.MaxRate}, "max-rate", "last step, messages/s")
			fs.DurationVar(&cfg.StepDuration, "step-duration", 5*time.Second, "length of each step")
			fs.DurationVar(&cfg.MaxP99, "max-p99", 50*time.Millisecond, "a step whose send→ack p99 exceeds this is not sustained")
			fs.BoolVar(&cfg.AllSteps, "all-steps", false, "run every step even after one fell behind")
			fs.IntVar(&cfg.Schedulers, "schedulers", 4, "publishing goroutines")
			return func(ctx context.Context) (*bench.Report, error) {
				cfg.Options = c.finish(fs.Output())
				cfg.Rates = rates
				return bench.Throughput(ctx, cfg)
			}
		},
	},
	{
		name:    "fill",
		summary: "write M messages into each of K rooms as fast as acked (prepares a store); idle memory after",
		details: `Rooms are named <prefix>-0 … <prefix>-(K-1), so that history and ready can
read them back. --connections connections each join --batch rooms at a time
(at most chatd's --max-rooms), pipeline --window sends (random base32 texts
of --text-size bytes), wait for every ack, leave and take the next batch.
Every ack is checked: a room's acks must carry the sequence numbers after
its head at the join, each once, and every message is read back once and
in order. A connection that gets no ack for --drain gives up (its rooms
count as failed). The report gives the fill rate, send→ack latency under
it and the server's group commits (syncs/s, writes per sync).
With --settle, it then waits until no node holds a room in memory
(chatd_rooms_owned + chatd_rooms_replicated from /metrics: the rooms left
after --room-idle-ttl), holds --hold, and reads the server's RSS (VmRSS)
and Go heap: the idle memory of a node that stored it all.`,
		setup: func(fs *flag.FlagSet, c *common) func(context.Context) (*bench.Report, error) {
			var cfg bench.FillConfig
			fs.IntVar(&cfg.Rooms, "rooms", 1000, "rooms to fill")
			fs.IntVar(&cfg.MessagesPerRoom, "messages-per-room", 100, "messages written into each room")
			fs.StringVar(&cfg.RoomPrefix, "room-prefix", "fill", "rooms are named <prefix>-<i>")
			fs.IntVar(&cfg.Connections, "connections", 32, "writing connections")
			fs.IntVar(&cfg.Batch, "batch", 50, "rooms one connection fills at a time (at most chatd's --max-rooms)")
			fs.IntVar(&cfg.Window, "window", 64, "sends in flight (written, not yet acked) per connection, at most")
			fs.DurationVar(&cfg.Settle, "settle", 0, "after the fill, wait up to this long for the rooms to leave the servers' memory (0: do not wait)")
			fs.DurationVar(&cfg.Hold, "hold", 0, "then wait this long before reading the server's idle memory")
			return func(ctx context.Context) (*bench.Report, error) {
				cfg.Options = c.finish(fs.Output())
				return bench.Fill(ctx, cfg)
			}
		},
	},
	{
		name:    "history",
		summary: "history pages with random 'before' from filled rooms: cold (first page of a room) and warm latency",
		details: `Reads the rooms a fill wrote (same --room-prefix and --rooms) over
--connections connections that join nothing, at --rate requests/s (open
loop; at most --max-inflight waiting per connection, more are skipped and
counted). Each request names a random room and a random 'before' in
[2, head+1]. With --requests 0 every room is read once, in random order, so
every page is a room's first. Latency is request→page, kept apart for each
room's first page ("cold": read from disk when the room is not in memory,
which --wait-cold waits for after a fill, and which a restarted node gives)
and later pages ("warm"). Every page is checked: head = --messages-per-room
(when given), oldest 1, exactly the messages below 'before', gapless; a
wrong page makes the exit code 3.`,
		setup: func(fs *flag.FlagSet, c *common) func(context.Context) (*bench.Report, error) {
			var cfg bench.HistoryConfig
			fs.IntVar(&cfg.Rooms, "rooms", 1000, "rooms the fill wrote")
			fs.StringVar(&cfg.RoomPrefix, "room-prefix", "fill", "the fill's room prefix")
			fs.IntVar(&cfg.MessagesPerRoom, "messages-per-room", 0, "head every room must have (0: not checked; the first page of a room is then its newest)")
			fs.IntVar(&cfg.Limit, "limit", 50, "messages per page (1–200)")
			fs.IntVar(&cfg.Requests, "requests", 0, "requests to send (0: each room once)")
			fs.Var(rateFlag{&cfg.Rate}, "rate", "requests per second")
			cfg.Rate = 200
			fs.IntVar(&cfg.Connections, "connections", 8, "reading connections")
			fs.IntVar(&cfg.MaxInflight, "max-inflight", 16, "requests waiting per connection, at most")
			fs.DurationVar(&cfg.WaitCold, "wait-cold", 0, "first wait up to this long for no node to hold a room in memory (0: do not wait)")
			return func(ctx context.Context) (*bench.Report, error) {
				cfg.Options = c.finish(fs.Output())
				return bench.History(ctx, cfg)
			}
		},
	},
	{
		name:    "ready",
		summary: "a just-(re)started chatd: time to /readyz and to the first stored page; idle memory",
		details: `Run it right after starting chatd on an existing --data-dir. It takes the
process's start time from /proc/<--server-pid> (or --started-at), polls
/readyz every --poll until it answers 200, then opens a connection and
reads the newest page of a random room of the fill (checked like history's
pages), and reports both times from the process start. After --hold it
reads the server's RSS (VmRSS) and Go heap.`,
		setup: func(fs *flag.FlagSet, c *common) func(context.Context) (*bench.Report, error) {
			var cfg bench.ReadyConfig
			var startedAt string
			fs.StringVar(&startedAt, "started-at", "", "when the server process started: RFC 3339 or Unix nanoseconds (default: from /proc/<--server-pid>)")
			fs.IntVar(&cfg.Rooms, "rooms", 0, "rooms the fill wrote (0: readiness only)")
			fs.StringVar(&cfg.RoomPrefix, "room-prefix", "fill", "the fill's room prefix")
			fs.IntVar(&cfg.MessagesPerRoom, "messages-per-room", 0, "head the page's room must have (0: not checked)")
			fs.DurationVar(&cfg.Poll, "poll", 5*time.Millisecond, "/readyz polling period")
			fs.DurationVar(&cfg.Timeout, "timeout", 5*time.Minute, "give up when not ready this long after the start")
			fs.DurationVar(&cfg.Hold, "hold", 10*time.Second, "wait this long after the first page before reading the idle memory")
			return func(ctx context.Context) (*bench.Report, error) {
				cfg.Options = c.finish(fs.Output())
				if startedAt != "" {
					t, err := parseTime(startedAt)
					if err != nil {
						return nil, err
					}
					cfg.StartedAt = t
				}
				return bench.Ready(ctx, cfg)
			}
		},
	},
	{
		name:    "crossnode",
		summary: "rooms whose publishers and subscribers are on different nodes (--url per node)",
		details: `Room i's publishers connect to URL i mod n and its subscribers to the other
URLs, so that every delivery has to cross nodes. Give every node's URL.`,
		setup: func(fs *flag.FlagSet, c *common) func(context.Context) (*bench.Report, error) {
			var cfg bench.CrossNodeConfig
			fs.IntVar(&cfg.Rooms, "rooms", 100, "rooms")
			fs.IntVar(&cfg.PublishersPerRoom, "publishers", 1, "publishers per room")
			fs.IntVar(&cfg.SubscribersPerRoom, "subscribers", 10, "subscribers per room")
			fs.Var(rateFlag{&cfg.Rate}, "rate", "messages per second per room")
			cfg.Rate = 10
			fs.DurationVar(&cfg.Duration, "duration", 30*time.Second, "measured window")
			fs.DurationVar(&cfg.MaxP99, "max-p99", time.Second, "the run is behind when p99 exceeds this")
			return func(ctx context.Context) (*bench.Report, error) {
				cfg.Options = c.finish(fs.Output())
				return bench.CrossNode(ctx, cfg)
			}
		},
	},
	{
		name:    "calibrate",
		summary: "the cost of one loopback write on this machine: the floor fan-out figures are compared with",
		details: `Opens --sockets TCP connections over 127.0.0.1 to a listener in chatbench
itself, drains each accepted one in a goroutine, and then, from one
goroutine locked to its thread, writes one --write-bytes WebSocket frame to
each socket in turn (one write system call per socket, as chatd writes a
message to each subscriber), round after round for --duration. It reports
ns per write (the mean, and the median over rounds of --sockets writes) and
the fan-out floor: sockets × the median, the time one message takes to
reach that many subscribers at one write each. No server is needed (the
--url and server flags are ignored).
Run it pinned to the core the server runs on, with nothing else running:
  taskset -c 0 chatbench calibrate
and give the median to fanout and rooms as --write-floor: their steps then
report p50 and p99 as multiples of the floor for their fan-out.`,
		setup: func(fs *flag.FlagSet, c *common) func(context.Context) (*bench.Report, error) {
			var cfg bench.CalibrateConfig
			fs.IntVar(&cfg.Sockets, "sockets", 1000, "loopback connections written to in turn (the fan-out)")
			fs.DurationVar(&cfg.Duration, "duration", 3*time.Second, "how long to write")
			fs.IntVar(&cfg.WriteBytes, "write-bytes", 100, "bytes per write: a WebSocket frame of a small message (2–127)")
			return func(ctx context.Context) (*bench.Report, error) {
				return bench.Calibrate(ctx, cfg)
			}
		},
	},
}

func usage() string {
	var b strings.Builder
	b.WriteString(`chatbench - load generator for chatd

Usage: chatbench <scenario> [flags]
       chatbench help <scenario>

Scenarios:
`)
	for _, s := range scenarios {
		fmt.Fprintf(&b, "  %-11s %s\n", s.name, s.summary)
	}
	b.WriteString(`
Start the server with limits that do not get in the way (and say so when
you publish figures):
  chatd --allow-anonymous --rate 1000000 --rate-burst 1000000 \
        --max-connections-per-ip 0 --max-connections 0 --max-rooms-per-node 0 \
        --admin-listen 127.0.0.1:9090
and give chatbench its metrics: --metrics-url http://127.0.0.1:9090/metrics

Or measure chatd as deployed, every limit at its default (tokens only, 20
frames/s per connection, 1000 connections per IP): give chatbench the
server's HS256 secret and enough loopback source addresses:
  chatd --jwt-secret-file /tmp/secret --admin-listen 127.0.0.1:9090
  chatbench <scenario> --token-secret-file /tmp/secret --source-addrs 20 ...
--token-secret-file mints a JWT per connection (sub = its user, exp in 24h,
no rooms claim) instead of an anonymous hello; --source-addrs N binds the
connections round robin to 127.0.0.2 … 127.0.0.(N+1) (loopback targets
only). Pin chatd to one core and measure that core's write floor first:
  taskset -c 0 chatbench calibrate

Examples:
  chatbench idle --connections 15000 --rooms 150
  chatbench fanout --subscribers 1000 --start-rate 100k --step-rate 100k
  chatbench fanout --subscribers 1000 --rates 500k --step-duration 20s
  chatbench rooms --connections 5000 --room-size 5 --rate 1
  chatbench crossnode --url ws://10.0.0.1:8080/ws --url ws://10.0.0.2:8080/ws --allow-remote

Issue 17's shapes against production defaults (docs/benchmarks.md):
  chatbench fanout --token-secret-file /tmp/secret --source-addrs 20 --subscribers 1000 \
      --publishers 125 --rule sustain --max-p99 500ms --rates 100k,250k,500k,750k,1M,1.25M \
      --step-duration 5s --write-floor <the figure calibrate printed>
  chatbench rooms --token-secret-file /tmp/secret --source-addrs 20 --connections 5000 --room-size 5 --rate 5
  chatbench storm --token-secret-file /tmp/secret --source-addrs 20 --connections 10000 --room-size 100
  chatbench idle --token-secret-file /tmp/secret --source-addrs 20 --connections 15000 --rooms 150

Durable history (chatd --data-dir; hack/bench-durable.sh runs them all):
  chatbench rooms --connections 5000 --room-size 5 --total-rate 10k     # send→ack
  chatbench throughput --rooms 1000 --window 16 --start-rate 10k --step-rate 10k
  chatbench fill --rooms 10000 --messages-per-room 100 --settle 2m --hold 30s
  chatbench history --rooms 10000 --messages-per-room 100 --wait-cold 2m
  chatbench ready --server-pid PID --rooms 10000 --messages-per-room 100 --hold 30s

Targets must be loopback unless --allow-remote. The open-file soft limit is
raised to the hard limit; when the hard limit caps a scenario the report
says so. Latency is publish→receive, from a send timestamp in the message
text, in HDR histograms; messages sent during --warmup are checked but not
measured. Every message is accounted for by (room, seq) and by the cid its
publisher chose: lost, duplicated and out-of-order messages are reported.

Output: progress lines on stderr (--quiet: none), the report on stdout as
tables or, with --json, one JSON document (format_version 1).

Exit codes (stable):
  0  the run completed and every message was accounted for
  1  setup failed, or connections failed to open, were closed by the
     server, or messages did not arrive within --drain
  2  usage error
  3  a message was lost, duplicated or reordered, a fill could not store
     every message, or a history page was not exactly what was stored
`)
	return b.String()
}

func find(name string) *scenario {
	for i := range scenarios {
		if scenarios[i].name == name {
			return &scenarios[i]
		}
	}
	return nil
}

func newFlagSet(s *scenario, out io.Writer) (*flag.FlagSet, func(context.Context) (*bench.Report, error), *common) {
	fs := flag.NewFlagSet("chatbench "+s.name, flag.ContinueOnError)
	fs.SetOutput(out)
	c := &common{}
	c.register(fs)
	runFn := s.setup(fs, c)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: chatbench %s [flags]\n\n%s.\n\n%s\n\nFlags:\n", s.name, s.summary, s.details)
		fs.PrintDefaults()
		fmt.Fprintf(w, "\nExit codes and output: chatbench help\n")
	}
	return fs, runFn, c
}

// run executes chatbench and returns its exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage())
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		if len(args) > 1 && args[0] == "help" {
			s := find(args[1])
			if s == nil {
				fmt.Fprintf(stderr, "chatbench: unknown scenario %q\n", args[1])
				return exitUsage
			}
			fs, _, _ := newFlagSet(s, stdout)
			fs.Usage()
			return exitOK
		}
		fmt.Fprint(stdout, usage())
		return exitOK
	}
	s := find(args[0])
	if s == nil {
		fmt.Fprintf(stderr, "chatbench: unknown scenario %q (try: chatbench help)\n", args[0])
		return exitUsage
	}
	fs, runFn, c := newFlagSet(s, stderr)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "chatbench: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if err := c.check(); err != nil {
		fmt.Fprintf(stderr, "chatbench %s: %v\n", s.name, err)
		return exitUsage
	}
	if c.cpuProfile != "" {
		stop, err := startCPUProfile(c.cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "chatbench: %v\n", err)
			return exitFailure
		}
		defer stop()
	}
	rep, err := runFn(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "chatbench %s: %v\n", s.name, err)
		return exitFailure
	}
	if c.json {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "chatbench: %v\n", err)
		return exitFailure
	}
	switch {
	case !rep.Consistent():
		return exitIntegrity
	case !rep.OK:
		return exitFailure
	}
	return exitOK
}

// parseTime reads RFC 3339 or Unix nanoseconds (date +%s%N).
func parseTime(s string) (time.Time, error) {
	if ns, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(0, ns), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--started-at %q: want RFC 3339 or Unix nanoseconds", s)
	}
	return t, nil
}

// startCPUProfile profiles chatbench until the returned function is called.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
