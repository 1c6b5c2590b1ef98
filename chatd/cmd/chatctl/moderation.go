package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

var cmdDisconnect = &command{
	name:    "disconnect",
	args:    "",
	summary: "close every connection of a user on every node (server API)",
	details: `
Asks chatd's server API (docs/api.md) to close every connection of --user on
every node: with close code 4010 (clients may reconnect and resume), or with
--no-reconnect 4011 (clients must not reconnect automatically). --reason is
the close frame's reason (at most 120 bytes). Prints how many connections
were closed; nodes that did not carry the order out (unreachable, or of an
older release) are named and the command exits 1: run it again. --json
prints a chatctl.disconnected record (the API's answer). A 503 or a lost
connection is retried until --timeout (a disconnect may be repeated).`,
	defaultTimeout: 10 * time.Second,
	flags: func(fs *flag.FlagSet, o *options) {
		fs.StringVar(&o.user, "user", "", "the user to disconnect (required)")
		fs.StringVar(&o.reason, "reason", "", "the close reason shown to the user")
		fs.BoolVar(&o.noReconnect, "no-reconnect", false, "tell the clients not to reconnect (close 4011 instead of 4010)")
		apiFlags(fs, o)
	},
	run: runDisconnect,
}

var cmdKick = &command{
	name:    "kick",
	args:    "",
	summary: "make a user's connections leave a room, on every node (server API)",
	details: `
Asks chatd's server API (docs/api.md) to make every connection of --user
that has joined --room leave it, on every node: each gets a left frame with
--reason (at most 120 bytes), and the room's others see the user leave. Not
a ban: the user may join again. Prints how many connections left; nodes
that did not carry the order out are named and the command exits 1: run it
again. --json prints a chatctl.kicked record (the API's answer). A 503 or a
lost connection is retried until --timeout (a kick may be repeated).`,
	defaultTimeout: 10 * time.Second,
	flags: func(fs *flag.FlagSet, o *options) {
		fs.Var(&o.rooms, "room", "the room (required)")
		fs.StringVar(&o.user, "user", "", "the user to kick (required)")
		fs.StringVar(&o.reason, "reason", "", "the reason shown to the user")
		apiFlags(fs, o)
	},
	run: runKick,
}

var cmdDelete = &command{
	name:    "delete",
	args:    "",
	summary: "delete a message of a room (server API)",
	details: `
Asks chatd's server API (docs/api.md) to delete the message at --seq of
--room: every subscriber gets a "deleted" frame, history and resume show the
message deleted (its sender and time kept, its text gone from every copy),
and the page shows "message deleted". --as names the deletion's sender (a
moderator), the API's system sender without it. Prints the seq the deletion
took; a message deleted before is reported as such (exit 0: a deletion may
be repeated); a seq without a message to delete exits 3 (no_such_message).
--json prints a chatctl.deleted record (the API's answer). A 503 or a lost
connection is retried until --timeout.`,
	defaultTimeout: 10 * time.Second,
	flags: func(fs *flag.FlagSet, o *options) {
		fs.Var(&o.rooms, "room", "the room (required)")
		fs.Uint64Var(&o.seq, "seq", 0, "the sequence number of the message to delete (required)")
		fs.StringVar(&o.as, "as", "", "the deletion's sender, shown to clients (default: the API's system sender)")
		apiFlags(fs, o)
	},
	run: runDelete,
}

// deletedAnswer is the server API's answer to a deletion.
type deletedAnswer struct {
	Room        string `json:"room"`
	Seq         uint64 `json:"seq"`
	DeletionSeq uint64 `json:"deletion_seq,omitempty"`
	Epoch       string `json:"epoch,omitempty"`
	Already     bool   `json:"already"`
}

// deletedRecord is the chatctl.deleted JSON record.
type deletedRecord struct {
	Type string `json:"type"`
	deletedAnswer
}

func runDelete(ctx context.Context, e *env, o *options, args []string) error {
	if len(args) > 0 {
		return usageError("delete takes no arguments")
	}
	room, err := oneRoom(o)
	if err != nil {
		return err
	}
	if o.seq == 0 {
		return usageError("--seq is required (a message's sequence number, from history or tail)")
	}
	base, key, err := apiSettings(o, e.getenv)
	if err != nil {
		return err
	}
	target := base + "/api/v1/rooms/" + url.PathEscape(room) + "/messages/" + strconv.FormatUint(o.seq, 10)
	if o.as != "" {
		target += "?" + url.Values{"by": {o.as}}.Encode()
	}
	raw, err := callWithRetry(ctx, e, http.MethodDelete, target, key, nil)
	if err != nil {
		return err
	}
	var d deletedAnswer
	if err := json.Unmarshal(raw, &d); err != nil {
		return &cliError{exit: exitFailure, code: "unexpected_reply", msg: "the API's answer is not a deletion result", err: err}
	}
	switch {
	case e.out.json:
		e.out.record(deletedRecord{Type: "chatctl.deleted", deletedAnswer: d})
	case d.Already:
		e.out.text("%s seq %d was already deleted", d.Room, d.Seq)
	default:
		e.out.text("deleted %s seq %d (the deletion is seq %d)", d.Room, d.Seq, d.DeletionSeq)
	}
	return outputErr(e)
}

// kickRequest is the server API's kick body.
type kickRequest struct {
	User   string `json:"user"`
	Reason string `json:"reason,omitempty"`
}

// kicked is the server API's answer to a kick.
type kicked struct {
	Room      string   `json:"room"`
	User      string   `json:"user"`
	Kicked    int      `json:"kicked"`
	Unreached []string `json:"unreached"`
}

// kickedRecord is the chatctl.kicked JSON record.
type kickedRecord struct {
	Type string `json:"type"`
	kicked
}

func runKick(ctx context.Context, e *env, o *options, args []string) error {
	if len(args) > 0 {
		return usageError("kick takes no arguments")
	}
	room, err := oneRoom(o)
	if err != nil {
		return err
	}
	if o.user == "" {
		return usageError("--user is required")
	}
	base, key, err := apiSettings(o, e.getenv)
	if err != nil {
		return err
	}
	body, err := json.Marshal(kickRequest{User: o.user, Reason: o.reason})
	if err != nil {
		return fmt.Errorf("encode the request: %w", err)
	}
	raw, err := postWithRetry(ctx, e, base+"/api/v1/rooms/"+url.PathEscape(room)+"/kick", key, body)
	if err != nil {
		return err
	}
	var k kicked
	if err := json.Unmarshal(raw, &k); err != nil {
		return &cliError{exit: exitFailure, code: "unexpected_reply", msg: "the API's answer is not a kick result", err: err}
	}
	if e.out.json {
		e.out.record(kickedRecord{Type: "chatctl.kicked", kicked: k})
	} else {
		e.out.text("kicked %s from %s: %d connection(s) left", k.User, k.Room, k.Kicked)
	}
	return unreachedErr(e, k.Unreached)
}

// unreachedErr fails a moderation command some nodes did not carry out.
func unreachedErr(e *env, unreached []string) error {
	if len(unreached) > 0 {
		return &cliError{exit: exitFailure, code: "incomplete", msg: "these nodes did not carry the order out; run the command again: " + strings.Join(unreached, ", ")}
	}
	return outputErr(e)
}

// apiFlags registers the flags of every server API command.
func apiFlags(fs *flag.FlagSet, o *options) {
	fs.StringVar(&o.apiURL, "api-url", "", "base URL of the server API: chatd's admin listener (env "+envAPIURL+", default "+defaultAPIURL+")")
	fs.StringVar(&o.apiKeyFile, "api-key-file", "", "file holding the API key (its first key line) (env "+envAPIKeyFile+")")
}

// disconnectRequest is the server API's disconnect body.
type disconnectRequest struct {
	Reason    string `json:"reason,omitempty"`
	Reconnect bool   `json:"reconnect"`
}

// disconnected is the server API's answer to a disconnect.
type disconnected struct {
	User      string   `json:"user"`
	Closed    int      `json:"closed"`
	Code      int      `json:"code"`
	Unreached []string `json:"unreached"`
}

// disconnectedRecord is the chatctl.disconnected JSON record.
type disconnectedRecord struct {
	Type string `json:"type"`
	disconnected
}

func runDisconnect(ctx context.Context, e *env, o *options, args []string) error {
	if len(args) > 0 {
		return usageError("disconnect takes no arguments")
	}
	if o.user == "" {
		return usageError("--user is required")
	}
	base, key, err := apiSettings(o, e.getenv)
	if err != nil {
		return err
	}
	body, err := json.Marshal(disconnectRequest{Reason: o.reason, Reconnect: !o.noReconnect})
	if err != nil {
		return fmt.Errorf("encode the request: %w", err)
	}
	raw, err := postWithRetry(ctx, e, base+"/api/v1/users/"+url.PathEscape(o.user)+"/disconnect", key, body)
	if err != nil {
		return err
	}
	var d disconnected
	if err := json.Unmarshal(raw, &d); err != nil {
		return &cliError{exit: exitFailure, code: "unexpected_reply", msg: "the API's answer is not a disconnect result", err: err}
	}
	if e.out.json {
		e.out.record(disconnectedRecord{Type: "chatctl.disconnected", disconnected: d})
	} else {
		e.out.text("disconnected %s: %d connection(s) closed with %d", d.User, d.Closed, d.Code)
	}
	return unreachedErr(e, d.Unreached)
}

var cmdSubscribe = &command{
	name:    "subscribe",
	args:    "",
	summary: "join a user's live connections to a room, on every node (server API)",
	details: `
Asks chatd's server API (docs/api.md) to join every live connection of
--user to --room, on every node, as if each had sent a join: each gets a
joined frame without id, then the room's traffic. Connections already in
the room or at their room limit are left alone. A user banned from the room
is refused (exit 3, banned). Prints how many connections joined; nodes that
did not carry the order out are named and the command exits 1: run it
again. --json prints a chatctl.subscribed record (the API's answer).`,
	defaultTimeout: 10 * time.Second,
	flags: func(fs *flag.FlagSet, o *options) {
		fs.Var(&o.rooms, "room", "the room (required)")
		fs.StringVar(&o.user, "user", "", "the user to subscribe (required)")
		apiFlags(fs, o)
	},
	run: runSubscribe,
}

// subscribed is the server API's answer to a subscription.
type subscribed struct {
	Room       string   `json:"room"`
	User       string   `json:"user"`
	Subscribed int      `json:"subscribed"`
	Unreached  []string `json:"unreached"`
}

type subscribedRecord struct {
	Type string `json:"type"`
	subscribed
}

func runSubscribe(ctx context.Context, e *env, o *options, args []string) error {
	if len(args) > 0 {
		return usageError("subscribe takes no arguments")
	}
	room, err := oneRoom(o)
	if err != nil {
		return err
	}
	if o.user == "" {
		return usageError("--user is required")
	}
	base, key, err := apiSettings(o, e.getenv)
	if err != nil {
		return err
	}
	body, err := json.Marshal(struct {
		User string `json:"user"`
	}{o.user})
	if err != nil {
		return fmt.Errorf("encode the request: %w", err)
	}
	raw, err := postWithRetry(ctx, e, base+"/api/v1/rooms/"+url.PathEscape(room)+"/subscriptions", key, body)
	if err != nil {
		return err
	}
	var s subscribed
	if err := json.Unmarshal(raw, &s); err != nil {
		return &cliError{exit: exitFailure, code: "unexpected_reply", msg: "the API's answer is not a subscription result", err: err}
	}
	if e.out.json {
		e.out.record(subscribedRecord{Type: "chatctl.subscribed", subscribed: s})
	} else {
		e.out.text("subscribed %s to %s: %d connection(s) joined", s.User, s.Room, s.Subscribed)
	}
	return unreachedErr(e, s.Unreached)
}
