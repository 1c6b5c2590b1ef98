// Command chatctl is a command-line client of chatd for people and scripts:
// send messages and direct messages, tail rooms (reconnecting and resuming
// across server restarts), fetch history, export a room's whole kept
// history as JSON Lines and show presence.
//
// Output is human-readable by default and JSON lines with --json; the exit
// codes and the JSON records are a stable interface (see `chatctl help`),
// used by the docs, the Helm test hook and the end-to-end suite.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Exit codes. They are part of chatctl's interface: never renumber them.
const (
	exitOK          = 0   // success
	exitFailure     = 1   // could not connect, connection lost for good, I/O error, unexpected reply
	exitUsage       = 2   // bad command line
	exitServerError = 3   // the server answered the request with an error frame
	exitAuth        = 4   // credentials refused (close 4001, 4003, 4004)
	exitTimeout     = 5   // --timeout expired before the command completed
	exitInterrupted = 130 // SIGINT/SIGTERM before a one-shot command completed
)

// Environment variables supplying flag defaults.
const (
	envURL   = "CHATCTL_URL"
	envToken = "CHATCTL_TOKEN"
	envName  = "CHATCTL_NAME"
)

const (
	defaultURL  = "ws://127.0.0.1:8080/ws"
	defaultName = "chatctl"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// command is one subcommand.
type command struct {
	name    string
	args    string // synopsis after the flags
	summary string
	details string
	// defaultTimeout is --timeout's default; 0 means none.
	defaultTimeout time.Duration
	// flags registers the command's own flags on fs.
	flags func(fs *flag.FlagSet, o *options)
	run   func(ctx context.Context, e *env, o *options, args []string) error
}

// options holds every flag; each command reads the ones it registered.
type options struct {
	url       string
	token     string
	tokenFile string
	name      string
	json      bool
	timeout   time.Duration

	rooms    stringList
	since    int64
	epoch    string
	count    int
	presence bool
	noRetry  bool

	limit  int
	before uint64
	// seq is delete's --seq.
	seq uint64
	// listen and secretFile are sink's.
	listen     string
	secretFile string

	to  string
	cid string

	// publish (the server API)
	as         string
	apiURL     string
	apiKeyFile string

	// moderation (the server API)
	user        string
	reason      string
	noReconnect bool
	duration    string

	out string
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}

// env is what a command runs with: its streams, the environment and the
// output formatter.
type env struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	out    *printer
}

var commands = []*command{cmdSend, cmdTail, cmdHistory, cmdExport, cmdPresence, cmdDM, cmdPublish, cmdDisconnect, cmdKick, cmdDelete, cmdBan, cmdUnban, cmdBans, cmdMute, cmdUnmute, cmdRooms, cmdWho, cmdSubscribe, cmdSink}

func findCommand(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// run executes chatctl with args and returns the exit code. Tests call it
// directly.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, mainUsage())
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		if len(args) > 1 && args[0] == "help" {
			if c := findCommand(args[1]); c != nil {
				fs, _ := newFlagSet(c, getenv, stdout)
				fs.SetOutput(stdout)
				fs.Usage()
				return exitOK
			}
			fmt.Fprintf(stderr, "chatctl: unknown command %q\n", args[1])
			return exitUsage
		}
		fmt.Fprint(stdout, mainUsage())
		return exitOK
	}
	c := findCommand(args[0])
	if c == nil {
		fmt.Fprintf(stderr, "chatctl: unknown command %q (try: chatctl help)\n", args[0])
		return exitUsage
	}
	fs, o := newFlagSet(c, getenv, stderr)
	positional, err := parseInterspersed(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(stdout)
		fs.Usage()
		return exitOK
	}
	if err != nil {
		// The flag package has already printed the error and the usage.
		return exitUsage
	}
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv, out: newPrinter(stdout, stderr, o.json)}
	if err := o.finish(getenv); err != nil {
		return e.out.fail(usageError(err.Error()))
	}
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, o.timeout, errTimeout)
		defer cancel()
	}
	if err := c.run(ctx, e, o, positional); err != nil {
		return e.out.fail(err)
	}
	return exitOK
}

// newFlagSet builds the flag set of c: the common connection and output
// flags, then c's own.
func newFlagSet(c *command, getenv func(string) string, usageOut io.Writer) (*flag.FlagSet, *options) {
	o := &options{since: -1}
	fs := flag.NewFlagSet("chatctl "+c.name, flag.ContinueOnError)
	fs.SetOutput(usageOut)
	fs.StringVar(&o.url, "url", "", "chatd WebSocket URL; http(s):// and a missing /ws path are accepted (env "+envURL+", default "+defaultURL+")")
	fs.StringVar(&o.token, "token", "", "JWT to authenticate with (env "+envToken+"); prefer --token-file or the env var, command lines are visible to other users")
	fs.StringVar(&o.tokenFile, "token-file", "", "file holding the JWT")
	fs.StringVar(&o.name, "name", "", "anonymous name, when no token is given and the server allows it (env "+envName+", default "+defaultName+")")
	fs.BoolVar(&o.json, "json", false, "print JSON lines instead of text (see `chatctl help`)")
	fs.DurationVar(&o.timeout, "timeout", c.defaultTimeout, "give up after this long (exit 5); 0 means never")
	if c.flags != nil {
		c.flags(fs, o)
	}
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: chatctl %s [flags] %s\n\n%s\n", c.name, c.args, c.summary)
		if c.details != "" {
			fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.details))
		}
		fmt.Fprintf(w, "\nFlags (also accepted after the arguments):\n")
		fs.PrintDefaults()
		fmt.Fprintf(w, "\nExit codes and the JSON records: chatctl help\n")
	}
	return fs, o
}

// parseInterspersed parses flags anywhere among the arguments (the flag
// package stops at the first non-flag); "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		// fs.Parse consumed a "--" if it stopped there: everything after
		// it is positional.
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// finish applies environment defaults and checks the common flags.
func (o *options) finish(getenv func(string) string) error {
	if o.url == "" {
		o.url = getenv(envURL)
	}
	if o.url == "" {
		o.url = defaultURL
	}
	u, err := normalizeURL(o.url)
	if err != nil {
		return err
	}
	o.url = u
	if o.token != "" && o.tokenFile != "" {
		return errors.New("give --token or --token-file, not both")
	}
	if o.tokenFile != "" {
		b, err := os.ReadFile(o.tokenFile)
		if err != nil {
			return fmt.Errorf("read --token-file: %w", err)
		}
		o.token = strings.TrimSpace(string(b))
		if o.token == "" {
			return fmt.Errorf("--token-file %s is empty", o.tokenFile)
		}
	}
	if o.token == "" {
		o.token = getenv(envToken)
	}
	if o.name == "" {
		o.name = getenv(envName)
	}
	if o.name == "" {
		o.name = defaultName
	}
	if o.timeout < 0 {
		return errors.New("--timeout must not be negative")
	}
	return nil
}

// normalizeURL accepts ws, wss, http and https URLs and adds the /ws path
// when none is given.
func normalizeURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("--url %q: %w", raw, err)
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("--url %q: scheme must be ws, wss, http or https", raw)
	}
	if u.Host == "" {
		return "", fmt.Errorf("--url %q has no host", raw)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/ws"
	}
	return u.String(), nil
}

func mainUsage() string {
	var b strings.Builder
	b.WriteString(`chatctl - a command-line client of chatd (ringchat protocol v1)

Usage: chatctl <command> [flags] [arguments]
       chatctl help [command]

Commands:
`)
	names := make([]string, 0, len(commands))
	for _, c := range commands {
		names = append(names, c.name)
	}
	sort.Strings(names)
	for _, n := range names {
		c := findCommand(n)
		fmt.Fprintf(&b, "  %-9s %s\n", c.name, c.summary)
	}
	b.WriteString(`
Examples:
  chatctl send --url ws://127.0.0.1:8080/ws --name ann --room lobby "hello"
  chatctl tail --room lobby --since 0 --count 10 --timeout 30s
  chatctl history --room lobby --limit 50 --json | jq -r 'select(.type=="message") | .text'
  chatctl export --room lobby --out lobby.jsonl
  chatctl presence --room lobby
  chatctl dm --to bob "hi"
  chatctl publish --api-url http://127.0.0.1:9090 --api-key-file keys --room lobby --as shop "order 42 shipped"
  chatctl disconnect --api-key-file keys --user bob --reason "account suspended" --no-reconnect
  chatctl kick --api-key-file keys --room lobby --user bob --reason off-topic
  chatctl delete --api-key-file keys --room lobby --seq 42 --as mod-ann
  chatctl ban --api-key-file keys --room lobby --user bob --for 24h --reason spam

Connection (every command):
  --url URL          chatd endpoint (env CHATCTL_URL, default ws://127.0.0.1:8080/ws)
  --token JWT        authenticate with a token (env CHATCTL_TOKEN; or --token-file FILE)
  --name NAME        otherwise connect anonymously as NAME (env CHATCTL_NAME, default chatctl;
                     needs a server started with --allow-anonymous)
  --json             JSON lines on stdout instead of text
  --timeout D        give up after D (e.g. 10s; 0 = never). Default 10s, tail and
                     export: none.

Server API (publish, disconnect, kick, ban, unban, bans, mute, unmute;
docs/api.md), instead of a connection:
  --api-url URL      chatd's admin listener (env CHATCTL_API_URL, default http://127.0.0.1:9090)
  --api-key-file F   file holding the API key (env CHATCTL_API_KEY_FILE; required)

Requests are retried on the same connection after rate_limited, and on a new
connection when the connection is lost (sends and DMs keep their cid, so a
retry is never stored twice). The first connection is not retried: a wrong
URL fails at once.

Exit codes (stable):
  0    success; for tail also Ctrl-C/SIGTERM, --count reached, or --timeout
       expired when no --count was given
  1    failure: cannot connect, connection lost for good (close 1008, 1009),
       unexpected reply (publish: an answer without the API's error body,
       e.g. the API is not enabled), I/O error; export: the room was recreated (another
       epoch) during the export or since --since/--epoch
  2    usage: unknown command or flag, missing argument
  3    the server refused the request with an error frame; its code
       (not_joined, forbidden, invalid_room, text_too_long, ...) is printed;
       export retries unavailable and internal instead; publish: the server
       API refused the request (4xx), its error code is printed; it
       retries 503 (unavailable, storage_full) until --timeout instead
  4    authentication refused: close 4001 (bad token or name), 4003 (protocol
       version) or 4004 (token expired); publish: the API key was refused (401)
  5    timeout: --timeout expired first (tail: before --count messages arrived)
  130  interrupted (SIGINT/SIGTERM) before a one-shot command completed

JSON output (--json; stable):
  One JSON object per line on stdout, each with a "type" member. Skip types
  you do not know: new ones may be added.
  - Server frames are printed verbatim, as documented in docs/protocol.md
    section 4.2: "message" (tail, history, export), "ack" (send, dm),
    "joined" (presence), "presence" (tail --presence).
  - chatctl's own records have types starting with "chatctl.":
    {"type":"chatctl.connected","url":...,"user":...,"session":...,"server":...}
        tail: each (re)connection
    {"type":"chatctl.reconnecting","attempt":N,"delay_ms":N,"reason":"..."}
        tail: the connection was lost, a reconnect follows after delay_ms
    {"type":"chatctl.resumed","room":...,"epoch":...,"since":N,"head":N,"outcome":"recovered|gap|new-epoch"}
        tail: a room was re-joined after a reconnect; gap and new-epoch mean
        recovered=false and chatctl reloads the room with history
    {"type":"chatctl.gap","room":...,"epoch":...,"from":N,"to":N,"reason":"..."}
        tail: messages from..to (inclusive) of that epoch cannot be shown
    {"type":"chatctl.history","room":...,"epoch":...,"head":N,"oldest":N,"more":B,"count":N}
        history: after the messages; more=true means older ones exist
        (page back with --before <first seq>)
    {"type":"chatctl.export","room":...,"epoch":...,"oldest":N,"head":N,"since":N,
     "first":N,"last":N,"count":N,"removed":N}
        export: the last line of a complete export (to --out or stdout).
        oldest and head are the room's when the export started (epoch ""
        for a room that does not exist); first..last are the seqs written;
        removed counts messages retention removed before the export got to
        them. Continue later with --since <head> --epoch <epoch>.
    {"type":"chatctl.retrying","room":...,"code":"unavailable","attempt":N,"delay_ms":N}
        export: a page was refused with a transient error; asked again
        after delay_ms
    {"type":"chatctl.published","room":...,"seq":N,"epoch":...,"ts":N,"duplicate":B}
        publish: the server API's answer (docs/api.md)
    {"type":"chatctl.disconnected","user":...,"closed":N,"code":N,"unreached":[...]}
        disconnect: the server API's answer; a non-empty unreached exits 1
        (code incomplete): run it again
    {"type":"chatctl.kicked","room":...,"user":...,"kicked":N,"unreached":[...]}
        kick: the server API's answer; unreached as for disconnect
    {"type":"chatctl.banned","user":...,"room":...,"until":N,"reason":...,"at":N}
        ban: the server API's answer (room absent: every room; until
        absent: until unban); unban prints chatctl.unbanned, bans one
        chatctl.ban per ban in force; mute and unmute print chatctl.muted
        and chatctl.unmuted records of the same shape
    {"type":"chatctl.retrying","code":"unavailable|connection_failed","attempt":N}
        publish and the moderation commands: the API answered 503, or the connection failed; sent
        again with the same idempotency key
    {"type":"chatctl.removed","room":...,"from":N,"to":N}
        export: messages from..to were no longer kept when reached
    {"type":"chatctl.error","exit":N,"code":"...","message":"...","close_code":N}
        any failure, just before exiting with a non-zero code. code is the
        server's error code for exit 3, otherwise one of connect_failed,
        connection_lost, auth_failed, timeout, interrupted, usage, io,
        epoch_changed, unexpected_reply, incomplete; close_code is present when a close
        frame caused it.
  Errors are also written as text to stderr; human output notices go to
  stderr so that stdout carries only messages.
`)
	return b.String()
}
