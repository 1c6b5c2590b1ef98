package main

import (
	"context"
	"encoding/json"
	"flag"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

var cmdRooms = &command{
	name:    "rooms",
	args:    "",
	summary: "list the rooms in use with their counts (server API)",
	details: `
Lists the rooms their owners hold in memory, one per line (room, users
present, nodes they are on, newest seq, owner), through chatd's server API
(docs/api.md). Nodes that did not answer are named on stderr; their rooms
are missing. --json prints one chatctl.room record per room.`,
	defaultTimeout: 10 * time.Second,
	flags:          func(fs *flag.FlagSet, o *options) { apiFlags(fs, o) },
	run:            runRooms,
}

var cmdWho = &command{
	name:    "who",
	args:    "",
	summary: "who is in a room (--room), or where a user is connected (--user) (server API)",
	details: `
With --room, the users present in the room (every node), one per line, as
its owner counts them; --limit caps the names listed (the count is whole).
With --user, the user's connections on every node, one per line (node,
session, transport, rooms). Nodes that did not answer are named on stderr.
--json prints a chatctl.presence record, or one chatctl.connection record per
connection.`,
	defaultTimeout: 10 * time.Second,
	flags: func(fs *flag.FlagSet, o *options) {
		fs.Var(&o.rooms, "room", "the room")
		fs.StringVar(&o.user, "user", "", "the user")
		fs.IntVar(&o.limit, "limit", 0, "with --room: list at most this many users (default: the API's, 1000)")
		apiFlags(fs, o)
	},
	run: runWho,
}

// roomInfo is a room as GET /api/v1/rooms answers it.
type roomInfo struct {
	Room  string `json:"room"`
	Epoch string `json:"epoch"`
	Head  uint64 `json:"head"`
	Users int    `json:"users"`
	Nodes int    `json:"nodes"`
	Owner string `json:"owner"`
}

type roomRecord struct {
	Type string `json:"type"`
	roomInfo
}

func runRooms(ctx context.Context, e *env, o *options, args []string) error {
	if len(args) > 0 {
		return usageError("rooms takes no arguments")
	}
	base, key, err := apiSettings(o, e.getenv)
	if err != nil {
		return err
	}
	raw, err := callWithRetry(ctx, e, http.MethodGet, base+"/api/v1/rooms", key, nil)
	if err != nil {
		return err
	}
	var list struct {
		Rooms     []roomInfo `json:"rooms"`
		Unreached []string   `json:"unreached"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return &cliError{exit: exitFailure, code: "unexpected_reply", msg: "the API's answer is not a list of rooms", err: err}
	}
	for _, r := range list.Rooms {
		if e.out.json {
			e.out.record(roomRecord{Type: "chatctl.room", roomInfo: r})
		} else {
			e.out.text("%s\t%d users\t%d nodes\tseq %d\towner %s", r.Room, r.Users, r.Nodes, r.Head, r.Owner)
		}
	}
	warnUnreached(e, list.Unreached)
	return outputErr(e)
}

// presenceInfo is GET /api/v1/rooms/{room}/presence's answer.
type presenceInfo struct {
	Room      string   `json:"room"`
	Owner     string   `json:"owner,omitempty"`
	Count     int      `json:"count"`
	Users     []string `json:"users"`
	Truncated bool     `json:"truncated"`
	Unreached []string `json:"unreached"`
}

type presenceRecord struct {
	Type string `json:"type"`
	presenceInfo
}

// connInfo is one connection in GET /api/v1/users/{user}/connections.
type connInfo struct {
	Node      string   `json:"node"`
	Session   string   `json:"session"`
	Transport string   `json:"transport"`
	Rooms     []string `json:"rooms"`
}

type connRecord struct {
	Type string `json:"type"`
	User string `json:"user"`
	connInfo
}

func runWho(ctx context.Context, e *env, o *options, args []string) error {
	if len(args) > 0 {
		return usageError("who takes no arguments")
	}
	if (len(o.rooms) > 0) == (o.user != "") {
		return usageError("give --room or --user, one of them")
	}
	base, key, err := apiSettings(o, e.getenv)
	if err != nil {
		return err
	}
	if o.user != "" {
		return whoUser(ctx, e, base, key, o.user)
	}
	room, err := oneRoom(o)
	if err != nil {
		return err
	}
	target := base + "/api/v1/rooms/" + url.PathEscape(room) + "/presence"
	if o.limit != 0 {
		target += "?" + url.Values{"limit": {strconv.Itoa(o.limit)}}.Encode()
	}
	raw, err := callWithRetry(ctx, e, http.MethodGet, target, key, nil)
	if err != nil {
		return err
	}
	var p presenceInfo
	if err := json.Unmarshal(raw, &p); err != nil {
		return &cliError{exit: exitFailure, code: "unexpected_reply", msg: "the API's answer is not a room's presence", err: err}
	}
	if e.out.json {
		e.out.record(presenceRecord{Type: "chatctl.presence", presenceInfo: p})
	} else {
		for _, u := range p.Users {
			e.out.text("%s", u)
		}
		if p.Truncated {
			e.out.text("… %d more (%d present)", p.Count-len(p.Users), p.Count)
		}
	}
	warnUnreached(e, p.Unreached)
	return outputErr(e)
}

func whoUser(ctx context.Context, e *env, base, key, user string) error {
	raw, err := callWithRetry(ctx, e, http.MethodGet, base+"/api/v1/users/"+url.PathEscape(user)+"/connections", key, nil)
	if err != nil {
		return err
	}
	var list struct {
		Connections []connInfo `json:"connections"`
		Unreached   []string   `json:"unreached"`
	}
	if err := json.Unmarshal(raw, &list); err != nil {
		return &cliError{exit: exitFailure, code: "unexpected_reply", msg: "the API's answer is not a list of connections", err: err}
	}
	for _, c := range list.Connections {
		if e.out.json {
			e.out.record(connRecord{Type: "chatctl.connection", User: user, connInfo: c})
		} else {
			rooms := strings.Join(c.Rooms, ",")
			if rooms == "" {
				rooms = "-"
			}
			e.out.text("%s\t%s\t%s\t%s", c.Node, c.Session, c.Transport, rooms)
		}
	}
	warnUnreached(e, list.Unreached)
	return outputErr(e)
}

// warnUnreached says which nodes did not answer (the answer lacks their
// part): on stderr, or as a chatctl.unreached record with --json.
func warnUnreached(e *env, nodes []string) {
	if len(nodes) > 0 {
		e.out.notice(unreachedRecord{Type: "chatctl.unreached", Nodes: nodes},
			"these nodes did not answer; their part is missing: %s", strings.Join(nodes, ", "))
	}
}

type unreachedRecord struct {
	Type  string   `json:"type"`
	Nodes []string `json:"nodes"`
}
