package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

var cmdBan = &command{
	name:    "ban",
	args:    "",
	summary: "ban a user from a room, or from every room (server API)",
	details: `
Bans --user from --room, or without --room from every room, through chatd's
server API (docs/api.md): every node refuses the user's joins (resumes
included) and sends with the error code banned; the user's connections in
the room leave it (without --room: are closed with 4011). --for D sets how
long (a Go duration: 90m, 24h; default: until unban). The ban is stored and
survives restarts. --json prints a chatctl.banned record (the API's answer).
A 503 or a lost connection is retried until --timeout (banning twice is
harmless).`,
	defaultTimeout: 10 * time.Second,
	flags: func(fs *flag.FlagSet, o *options) {
		fs.Var(&o.rooms, "room", "the room (default: every room)")
		fs.StringVar(&o.user, "user", "", "the user to ban (required)")
		fs.StringVar(&o.reason, "reason", "", "the reason shown to the user")
		fs.StringVar(&o.duration, "for", "", "how long, as a Go duration (90m, 24h); default: until unban")
		apiFlags(fs, o)
	},
	run: runBan,
}

var cmdUnban = &command{
	name:    "unban",
	args:    "",
	summary: "lift a user's ban from a room, or from every room (server API)",
	details: `
Lifts the ban of --user from --room (without --room: the ban from every
room) through chatd's server API (docs/api.md). Lifting a ban that does not
exist is not an error. --json prints a chatctl.unbanned record.`,
	defaultTimeout: 10 * time.Second,
	flags: func(fs *flag.FlagSet, o *options) {
		fs.Var(&o.rooms, "room", "the room (default: the ban from every room)")
		fs.StringVar(&o.user, "user", "", "the user (required)")
		apiFlags(fs, o)
	},
	run: runUnban,
}

var cmdBans = &command{
	name:    "bans",
	args:    "",
	summary: "list the bans in force (server API)",
	details: `
Lists the bans in force, as the node behind --api-url knows them, one per
line (user, room or "*" for every room, end or "-", reason); --room keeps
that room's own. --json prints one chatctl.ban record per ban.`,
	defaultTimeout: 10 * time.Second,
	flags: func(fs *flag.FlagSet, o *options) {
		fs.Var(&o.rooms, "room", "only the bans of this room")
		apiFlags(fs, o)
	},
	run: runBans,
}

// banRequest is the server API's ban body.
type banRequest struct {
	User     string `json:"user"`
	Room     string `json:"room,omitempty"`
	Duration string `json:"duration,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// banned is a ban as the server API answers it.
type banned struct {
	User   string `json:"user"`
	Room   string `json:"room,omitempty"`
	Until  int64  `json:"until,omitempty"`
	Reason string `json:"reason,omitempty"`
	At     int64  `json:"at"`
}

// bannedRecord is the chatctl.banned, chatctl.unbanned and chatctl.ban
// JSON record.
type bannedRecord struct {
	Type string `json:"type"`
	banned
}

// optionalRoom returns --room when given (once), checked by the API.
func optionalRoom(o *options) (string, error) {
	switch len(o.rooms) {
	case 0:
		return "", nil
	case 1:
		return oneRoom(o)
	}
	return "", usageError("give at most one --room")
}

func describeBan(b banned) string {
	room := "every room"
	if b.Room != "" {
		room = b.Room
	}
	until := "until lifted"
	if b.Until != 0 {
		until = "until " + time.UnixMilli(b.Until).UTC().Format(time.RFC3339)
	}
	s := fmt.Sprintf("%s from %s %s", b.User, room, until)
	if b.Reason != "" {
		s += ": " + b.Reason
	}
	return s
}

func runBan(ctx context.Context, e *env, o *options, args []string) error {
	if len(args) > 0 {
		return usageError("ban takes no arguments")
	}
	room, err := optionalRoom(o)
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
	body, err := json.Marshal(banRequest{User: o.user, Room: room, Duration: o.duration, Reason: o.reason})
	if err != nil {
		return fmt.Errorf("encode the request: %w", err)
	}
	raw, err := postWithRetry(ctx, e, base+"/api/v1/bans", key, body)
	if err != nil {
		return err
	}
	return printBan(e, raw, "chatctl.banned", "banned ")
}

func runUnban(ctx context.Context, e *env, o *options, args []string) error {
	if len(args) > 0 {
		return usageError("unban takes no arguments")
	}
	room, err := optionalRoom(o)
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
	q := url.Values{"user": {o.user}}
	if room != "" {
		q.Set("room", room)
	}
	raw, err := callWithRetry(ctx, e, http.MethodDelete, base+"/api/v1/bans?"+q.Encode(), key, nil)
	if err != nil {
		return err
	}
	var b banned
	if err := json.Unmarshal(raw, &b); err != nil {
		return &cliError{exit: exitFailure, code: "unexpected_reply", msg: "the API's answer is not a ban", err: err}
	}
	if e.out.json {
		e.out.record(bannedRecord{Type: "chatctl.unbanned", banned: b})
	} else {
		room := "every room"
		if b.Room != "" {
			room = b.Room
		}
		e.out.text("unbanned %s from %s", b.User, room)
	}
	return outputErr(e)
}

func runBans(ctx context.Context, e *env, o *options, args []string) error {
	if len(args) > 0 {
		return usageError("bans takes no arguments")
	}
	room, err := optionalRoom(o)
	if err != nil {
		return err
	}
	base, key, err := apiSettings(o, e.getenv)
	if err != nil {
		return err
	}
	target := base + "/api/v1/bans"
	if len(o.rooms) > 0 {
		target += "?" + url.Values{"room": {room}}.Encode()
	}
	raw, err := callWithRetry(ctx, e, http.MethodGet, target, key, nil)
	if err != nil {
		return err
	}
	var list struct {
		Bans []banned `json:"bans"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return &cliError{exit: exitFailure, code: "unexpected_reply", msg: "the API's answer is not a list of bans", err: err}
	}
	for _, b := range list.Bans {
		if e.out.json {
			e.out.record(bannedRecord{Type: "chatctl.ban", banned: b})
		} else {
			e.out.text("%s", describeBan(b))
		}
	}
	return outputErr(e)
}

func printBan(e *env, raw []byte, typ, prefix string) error {
	var b banned
	if err := json.Unmarshal(raw, &b); err != nil {
		return &cliError{exit: exitFailure, code: "unexpected_reply", msg: "the API's answer is not a ban", err: err}
	}
	if e.out.json {
		e.out.record(bannedRecord{Type: typ, banned: b})
	} else {
		e.out.text("%s%s", prefix, describeBan(b))
	}
	return outputErr(e)
}

var cmdMute = &command{
	name:    "mute",
	args:    "",
	summary: "mute a user in a room: may read, may not send (server API)",
	details: `
Mutes --user in --room through chatd's server API (docs/api.md): the user
may join and read the room, but every node refuses its sends there with the
error code muted. --for D sets how long (a Go duration; default: until
unmute). --json prints a chatctl.muted record (the API's answer).`,
	defaultTimeout: 10 * time.Second,
	flags: func(fs *flag.FlagSet, o *options) {
		fs.Var(&o.rooms, "room", "the room (required)")
		fs.StringVar(&o.user, "user", "", "the user to mute (required)")
		fs.StringVar(&o.reason, "reason", "", "the reason shown when a send is refused")
		fs.StringVar(&o.duration, "for", "", "how long, as a Go duration (10m, 1h); default: until unmute")
		apiFlags(fs, o)
	},
	run: runMute,
}

var cmdUnmute = &command{
	name:    "unmute",
	args:    "",
	summary: "lift a user's mute in a room (server API)",
	details: `
Lifts the mute of --user in --room through chatd's server API (docs/api.md).
Lifting a mute that does not exist is not an error. --json prints a
chatctl.unmuted record.`,
	defaultTimeout: 10 * time.Second,
	flags: func(fs *flag.FlagSet, o *options) {
		fs.Var(&o.rooms, "room", "the room (required)")
		fs.StringVar(&o.user, "user", "", "the user (required)")
		apiFlags(fs, o)
	},
	run: runUnmute,
}

// muteRequest is the server API's mute body.
type muteRequest struct {
	User     string `json:"user"`
	Duration string `json:"duration,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

func runMute(ctx context.Context, e *env, o *options, args []string) error {
	if len(args) > 0 {
		return usageError("mute takes no arguments")
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
	body, err := json.Marshal(muteRequest{User: o.user, Duration: o.duration, Reason: o.reason})
	if err != nil {
		return fmt.Errorf("encode the request: %w", err)
	}
	raw, err := postWithRetry(ctx, e, base+"/api/v1/rooms/"+url.PathEscape(room)+"/mutes", key, body)
	if err != nil {
		return err
	}
	return printBan(e, raw, "chatctl.muted", "muted ")
}

func runUnmute(ctx context.Context, e *env, o *options, args []string) error {
	if len(args) > 0 {
		return usageError("unmute takes no arguments")
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
	raw, err := callWithRetry(ctx, e, http.MethodDelete, base+"/api/v1/rooms/"+url.PathEscape(room)+"/mutes?"+url.Values{"user": {o.user}}.Encode(), key, nil)
	if err != nil {
		return err
	}
	var b banned
	if err := json.Unmarshal(raw, &b); err != nil {
		return &cliError{exit: exitFailure, code: "unexpected_reply", msg: "the API's answer is not a mute", err: err}
	}
	if e.out.json {
		e.out.record(bannedRecord{Type: "chatctl.unmuted", banned: b})
	} else {
		e.out.text("unmuted %s in %s", b.User, b.Room)
	}
	return outputErr(e)
}
