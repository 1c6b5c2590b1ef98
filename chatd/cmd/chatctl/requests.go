package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ringchat/ringchat/chatd/client"
	"github.com/ringchat/ringchat/chatd/protocol"
)

var cmdSend = &command{
	name:    "send",
	args:    "TEXT... | -",
	summary: "send a message to a room and wait until the server has stored it",
	details: `
Joins the room, sends TEXT (the arguments joined by spaces; "-" reads the
text from stdin) and waits for the ack. Prints the message's sequence number;
--json prints the ack frame. If the connection is lost before the ack, the
message is sent again with the same cid on a new connection: the server
stores it once ("duplicate":true in the ack then).`,
	defaultTimeout: 10 * time.Second,
	flags: func(fs *flag.FlagSet, o *options) {
		fs.Var(&o.rooms, "room", "room to send to (required)")
		fs.StringVar(&o.cid, "cid", "", "client message id, 1-64 bytes (default: random); resending with the same cid is idempotent")
	},
	run: runSend,
}

var cmdDM = &command{
	name:    "dm",
	args:    "TEXT... | -",
	summary: "send a direct message to a user",
	details: `
Sends TEXT to every open connection of the user --to and prints how many
connections it reached (DMs are not stored: 0 means nobody received it,
which is not an error). --json prints the ack frame.`,
	defaultTimeout: 10 * time.Second,
	flags: func(fs *flag.FlagSet, o *options) {
		fs.StringVar(&o.to, "to", "", "recipient user id (required)")
		fs.StringVar(&o.cid, "cid", "", "client message id, 1-64 bytes (default: random)")
	},
	run: runDM,
}

var cmdHistory = &command{
	name:    "history",
	summary: "print a room's recent messages, oldest first",
	details: `
Fetches up to --limit messages with a sequence number below --before (default:
the newest), paging as needed (the server returns at most 200 per request).
No join is needed. --json prints each message frame, then a chatctl.history
record with the room's epoch, head, oldest and whether older messages exist.`,
	defaultTimeout: 10 * time.Second,
	flags: func(fs *flag.FlagSet, o *options) {
		fs.Var(&o.rooms, "room", "room to read (required)")
		fs.IntVar(&o.limit, "limit", 50, "number of messages (1-100000)")
		fs.Uint64Var(&o.before, "before", 0, "only messages with a sequence number below this (0: up to the newest)")
	},
	run: runHistory,
}

var cmdPresence = &command{
	name:    "presence",
	summary: "show who is in a room",
	details: `
Joins the room and prints the users present, chatctl's own user included
(marked "(you)"). Above the server's presence_list_max (default 100 users)
only the count is known. --json prints the joined frame.`,
	defaultTimeout: 10 * time.Second,
	flags: func(fs *flag.FlagSet, o *options) {
		fs.Var(&o.rooms, "room", "room to inspect (required)")
	},
	run: runPresence,
}

// sendForAck runs send on a connection (a new one after each loss, resending
// with the same cid, which the server stores once) until it returns the ack
// frame, and decodes the ack.
func sendForAck(ctx context.Context, e *env, o *options, send func(*client.Conn) (client.Frame, error)) (client.Frame, protocol.Ack, error) {
	var f client.Frame
	err := withRetry(ctx, e, o, "before the ack", func(c *client.Conn) error {
		var err error
		f, err = send(c)
		return err
	})
	if err != nil {
		return client.Frame{}, protocol.Ack{}, err
	}
	var ack protocol.Ack
	if err := f.Decode(&ack); err != nil {
		return client.Frame{}, protocol.Ack{}, fmt.Errorf("decode ack: %w", err)
	}
	return f, ack, nil
}

// oneRoom returns the single --room of a command.
func oneRoom(o *options) (string, error) {
	if len(o.rooms) != 1 {
		return "", usageError("give exactly one --room")
	}
	if err := protocol.ValidateRoom(o.rooms[0]); err != nil {
		return "", usageError("--room: " + err.Error())
	}
	return o.rooms[0], nil
}

// messageText joins the positional arguments, or reads stdin for "-".
func messageText(e *env, args []string) (string, error) {
	if len(args) == 1 && args[0] == "-" {
		b, err := io.ReadAll(e.stdin)
		if err != nil {
			return "", &cliError{exit: exitFailure, code: "io", msg: "read stdin", err: err}
		}
		text := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		if text == "" {
			return "", usageError("stdin is empty: nothing to send")
		}
		return text, nil
	}
	text := strings.Join(args, " ")
	if text == "" {
		return "", usageError("nothing to send: give the text as arguments, or - to read stdin")
	}
	return text, nil
}

// newCID returns cid, or a random one.
func newCID(cid string) (string, error) {
	if cid != "" {
		if len(cid) > protocol.MaxCIDLen {
			return "", usageError(fmt.Sprintf("--cid is longer than %d bytes", protocol.MaxCIDLen))
		}
		return cid, nil
	}
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random cid: %w", err)
	}
	return "chatctl-" + hex.EncodeToString(b[:]), nil
}

func runSend(ctx context.Context, e *env, o *options, args []string) error {
	room, err := oneRoom(o)
	if err != nil {
		return err
	}
	text, err := messageText(e, args)
	if err != nil {
		return err
	}
	cid, err := newCID(o.cid)
	if err != nil {
		return err
	}
	ackFrame, ack, err := sendForAck(ctx, e, o, func(c *client.Conn) (client.Frame, error) {
		if _, err := call(ctx, c, protocol.ClientFrame{Type: protocol.TypeJoin, ID: "join", Room: room}, protocol.TypeJoined, nil); err != nil {
			return client.Frame{}, err
		}
		return call(ctx, c, protocol.ClientFrame{Type: protocol.TypeSend, ID: "send", Room: room, CID: cid, Text: text}, protocol.TypeAck, nil)
	})
	if err != nil {
		return err
	}
	if e.out.json {
		e.out.frame(ackFrame.Raw)
	} else {
		dup := ""
		if ack.Duplicate {
			dup = " (duplicate: it had been stored already)"
		}
		e.out.text("sent to %s: seq %d, mid %s%s", ack.Room, ack.Seq, ack.MID, dup)
	}
	return outputErr(e)
}

func runDM(ctx context.Context, e *env, o *options, args []string) error {
	if o.to == "" {
		return usageError("--to is required")
	}
	if len(o.to) > protocol.MaxUserLen {
		return usageError(fmt.Sprintf("--to is longer than %d bytes", protocol.MaxUserLen))
	}
	text, err := messageText(e, args)
	if err != nil {
		return err
	}
	cid, err := newCID(o.cid)
	if err != nil {
		return err
	}
	ackFrame, ack, err := sendForAck(ctx, e, o, func(c *client.Conn) (client.Frame, error) {
		return call(ctx, c, protocol.ClientFrame{Type: protocol.TypeDM, ID: "dm", To: o.to, CID: cid, Text: text}, protocol.TypeAck, nil)
	})
	if err != nil {
		return err
	}
	if e.out.json {
		e.out.frame(ackFrame.Raw)
	} else {
		delivered := 0
		if ack.Delivered != nil {
			delivered = *ack.Delivered
		}
		e.out.text("dm to %s: delivered to %d connection(s), mid %s", ack.To, delivered, ack.MID)
	}
	return outputErr(e)
}

// historyPage is a history frame with its messages kept raw, so that --json
// prints them verbatim.
type historyPage struct {
	Epoch    string            `json:"epoch"`
	Head     uint64            `json:"head"`
	Oldest   uint64            `json:"oldest"`
	More     bool              `json:"more"`
	Messages []json.RawMessage `json:"messages"`
}

// historyRecord is the chatctl.history JSON record.
type historyRecord struct {
	Type   string `json:"type"`
	Room   string `json:"room"`
	Epoch  string `json:"epoch"`
	Head   uint64 `json:"head"`
	Oldest uint64 `json:"oldest"`
	More   bool   `json:"more"`
	Count  int    `json:"count"`
}

// maxHistoryLimit bounds --limit: the server keeps 1000 messages per room
// by default; this leaves room for bigger --history-size settings.
const maxHistoryLimit = 100000

func runHistory(ctx context.Context, e *env, o *options, args []string) error {
	room, err := oneRoom(o)
	if err != nil {
		return err
	}
	if len(args) > 0 {
		return usageError("history takes no arguments")
	}
	if o.limit < 1 || o.limit > maxHistoryLimit {
		return usageError(fmt.Sprintf("--limit must be between 1 and %d", maxHistoryLimit))
	}
	var (
		msgs []json.RawMessage
		last historyPage
	)
	err = withRetry(ctx, e, o, "fetching history", func(c *client.Conn) error {
		msgs, last = nil, historyPage{}
		before := o.before
		for page := 1; len(msgs) < o.limit; page++ {
			req := protocol.ClientFrame{Type: protocol.TypeHistory, ID: fmt.Sprintf("h%d", page), Room: room,
				Before: before, Limit: min(o.limit-len(msgs), protocol.MaxHistoryReq)}
			f, err := call(ctx, c, req, protocol.TypeHistory, nil)
			if err != nil {
				return err
			}
			var p historyPage
			if err := f.Decode(&p); err != nil {
				return fmt.Errorf("decode history: %w", err)
			}
			if page > 1 && p.Epoch != last.Epoch {
				// The room was recreated while paging; what we have is
				// from the old incarnation. Start over.
				return &connFailure{err: errors.New("room recreated while paging"), disp: client.Reconnect, lost: true}
			}
			last = p
			msgs = append(append([]json.RawMessage(nil), p.Messages...), msgs...)
			if !p.More || len(p.Messages) == 0 {
				break
			}
			var first protocol.Message
			if err := json.Unmarshal(p.Messages[0], &first); err != nil {
				return fmt.Errorf("decode history message: %w", err)
			}
			before = first.Seq
		}
		return nil
	})
	if err != nil {
		return err
	}
	more := last.More
	var firstSeq uint64
	for i, raw := range msgs {
		var m protocol.Message
		if err := json.Unmarshal(raw, &m); err != nil {
			return fmt.Errorf("decode history message: %w", err)
		}
		if i == 0 {
			firstSeq = m.Seq
		}
		e.out.message(raw, &m)
	}
	if e.out.json {
		e.out.record(historyRecord{Type: "chatctl.history", Room: room, Epoch: last.Epoch, Head: last.Head, Oldest: last.Oldest, More: more, Count: len(msgs)})
	} else {
		switch {
		case len(msgs) == 0:
			fmt.Fprintf(e.stderr, "chatctl: %s: no messages\n", room)
		case more:
			fmt.Fprintf(e.stderr, "chatctl: %s: older messages exist (use --before %d)\n", room, firstSeq)
		}
	}
	return outputErr(e)
}

func runPresence(ctx context.Context, e *env, o *options, args []string) error {
	room, err := oneRoom(o)
	if err != nil {
		return err
	}
	if len(args) > 0 {
		return usageError("presence takes no arguments")
	}
	var (
		joinedFrame client.Frame
		me          string
	)
	err = withRetry(ctx, e, o, "waiting for the room", func(c *client.Conn) error {
		f, err := call(ctx, c, protocol.ClientFrame{Type: protocol.TypeJoin, ID: "join", Room: room}, protocol.TypeJoined, nil)
		joinedFrame, me = f, c.Welcome.User
		return err
	})
	if err != nil {
		return err
	}
	var j protocol.Joined
	if err := joinedFrame.Decode(&j); err != nil {
		return fmt.Errorf("decode joined: %w", err)
	}
	if e.out.json {
		e.out.frame(joinedFrame.Raw)
		return outputErr(e)
	}
	if len(j.Present) == 0 && j.Count > 0 {
		e.out.text("%s: %d present (names are listed only up to the server's presence_list_max)", j.Room, j.Count)
		return outputErr(e)
	}
	e.out.text("%s: %d present", j.Room, j.Count)
	for _, u := range j.Present {
		if u == me {
			e.out.text("  %s (you)", u)
		} else {
			e.out.text("  %s", u)
		}
	}
	return outputErr(e)
}

// outputErr reports a failed write to stdout.
func outputErr(e *env) error {
	if e.out.err != nil {
		return ioError(e.out.err)
	}
	return nil
}
