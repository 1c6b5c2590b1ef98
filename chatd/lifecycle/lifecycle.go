// Package lifecycle walks a clustered node through its membership states:
// it joins the cluster, proves that the inter-node transport works with
// another member (the link check), announces ACTIVE, and at shutdown
// announces DRAINING and waits until its rooms have moved. It also answers
// the cluster part of the node's readiness.
//
// It sees the membership and the rest of the node through small interfaces
// (Members, Pinger, Rooms), so its state machine is tested with fakes; the
// app package wires the real ones.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/ringchat/ringchat/chatd/backoff"
	"github.com/ringchat/ringchat/chatd/membership"
)

// LinkHint says what to check when no member answers over the transport.
const LinkHint = "check that every node's certificate (--peer-tls-cert-file) names the node and chains to a CA the others trust (--peer-tls-ca-file), that every node speaks the same inter-node protocol version, and that the inter-node ports are reachable"

// Members is the part of the membership the lifecycle drives.
type Members interface {
	// Start joins the cluster (see membership.Membership.Start).
	Start(ctx context.Context) error
	// View returns the current members.
	View() membership.View
	// SetState announces this node's state.
	SetState(s membership.State) error
	// Ready reports whether the membership has joined and settled.
	Ready() (bool, string)
}

// Pinger exchanges one request and reply with another member over the
// inter-node transport and calls done with the outcome.
type Pinger interface {
	Ping(name, addr string, timeout time.Duration, done func(error))
}

// Rooms is what a drain watches: the rooms this node still owns, and
// whether any other node is active to take them.
type Rooms interface {
	OwnedRoomCount() int
	HasActivePeers() bool
}

// Config tunes the link check and the drain; zero fields take the defaults.
type Config struct {
	// PingTimeout bounds one link check attempt (default 2 s).
	PingTimeout time.Duration
	// RetryMin and RetryMax bound the backoff between failed link checks:
	// RetryMin doubling up to RetryMax (defaults 200 ms and 5 s).
	RetryMin, RetryMax time.Duration
	// Fanout is how many members one attempt asks at once (default 3).
	Fanout int
	// DrainPoll is how often a drain looks at the rooms still owned
	// (default 50 ms).
	DrainPoll time.Duration
}

func (c Config) withDefaults() Config {
	if c.PingTimeout <= 0 {
		c.PingTimeout = 2 * time.Second
	}
	if c.RetryMin <= 0 {
		c.RetryMin = 200 * time.Millisecond
	}
	if c.RetryMax <= 0 {
		c.RetryMax = 5 * time.Second
	}
	if c.Fanout <= 0 {
		c.Fanout = 3
	}
	if c.DrainPoll <= 0 {
		c.DrainPoll = 50 * time.Millisecond
	}
	return c
}

// Lifecycle is one node's membership state machine: JOINING until Join has
// joined and checked the link, then ACTIVE, then DRAINING from Drain on. A
// Drain that comes first wins: a Join that finishes late does not undo it.
type Lifecycle struct {
	cfg     Config
	members Members
	pinger  Pinger
	log     *slog.Logger

	// stateMu orders the announcements of the ACTIVE and DRAINING states,
	// so that an activation that finishes late cannot undo a drain.
	stateMu  sync.Mutex
	stopping bool // guarded by stateMu

	// mu guards what readiness reads about the link check.
	mu        sync.Mutex
	active    bool     // this node announced ACTIVE
	linkFails int      // link checks that reached no member
	linkErr   error    // the last one's error
	linkTried []string // the members it asked
}

// New returns the lifecycle of a node whose membership is members and whose
// transport pinger reaches the others.
func New(cfg Config, members Members, pinger Pinger, log *slog.Logger) *Lifecycle {
	return &Lifecycle{cfg: cfg.withDefaults(), members: members, pinger: pinger, log: log}
}

// Join runs the initial join, checks the inter-node transport and announces
// ACTIVE. It returns when the node is active or ctx is done; its caller owns
// the goroutine and cancels ctx at shutdown.
func (l *Lifecycle) Join(ctx context.Context) {
	if err := l.members.Start(ctx); err != nil {
		if ctx.Err() == nil {
			l.log.Error("joining the cluster failed", "err", err)
		}
		return
	}
	if !l.checkLink(ctx) {
		return
	}
	l.stateMu.Lock()
	defer l.stateMu.Unlock()
	if l.stopping || ctx.Err() != nil {
		return
	}
	if err := l.members.SetState(membership.StateActive); err != nil {
		l.log.Error("could not announce the active state", "err", err)
		return
	}
	l.mu.Lock()
	l.active = true
	l.mu.Unlock()
	l.log.Info("joined the cluster", "members", len(l.members.View().Members))
}

// checkLink waits until this node has exchanged one request and reply with
// another member over the inter-node transport, which proves that they
// trust each other's certificates, or until no other member is alive (a node that
// bootstrapped alone). Gossip and the transport are authenticated
// separately (gossip keyring and label; certificates), so a node whose certificate
// differs joins gossip perfectly well; were it to go active, it would own
// rooms nobody can reach. It retries until it succeeds or ctx ends, and
// reports false in that case.
func (l *Lifecycle) checkLink(ctx context.Context) bool {
	retry := backoff.Backoff{Base: l.cfg.RetryMin, Max: l.cfg.RetryMax, Jitter: backoff.Spread}
	for {
		peers := linkCandidates(l.members.View(), l.cfg.Fanout)
		if len(peers) == 0 {
			return true // alone: nobody to talk to, nothing to check
		}
		start := time.Now()
		who, err := l.pingAny(ctx, peers)
		if err == nil {
			l.mu.Lock()
			fails := l.linkFails
			l.mu.Unlock()
			l.log.Info("inter-node connection authenticated", "peer", who, "took", time.Since(start).Round(time.Microsecond).String(), "failed_attempts", fails)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		names := make([]string, len(peers))
		for i, p := range peers {
			names[i] = p.Name
		}
		l.mu.Lock()
		l.linkFails++
		l.linkErr, l.linkTried = err, names
		attempts := l.linkFails
		l.mu.Unlock()
		delay := retry.Next()
		l.log.Warn("no authenticated inter-node connection to another member; staying joining",
			"tried", names, "attempt", attempts, "retry_in", delay.Round(time.Millisecond).String(), "err", err,
			"hint", LinkHint)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}

// peer is a member to ping: its name and inter-node address.
type peer struct{ Name, Addr string }

// linkCandidates picks up to fanout other members to ping: active ones
// first (they are settled), then the others (in a cluster starting all at
// once every node is joining, and joining nodes answer too), at random
// within each group so that a member that cannot answer is not asked by
// every newcomer first.
func linkCandidates(v membership.View, fanout int) []peer {
	var active, other []peer
	for _, mem := range v.Members {
		if mem.Name == v.Self || mem.Meta.RPCAddr == "" {
			continue
		}
		p := peer{Name: mem.Name, Addr: mem.Meta.RPCAddr}
		if mem.Meta.State == membership.StateActive {
			active = append(active, p)
		} else {
			other = append(other, p)
		}
	}
	rand.Shuffle(len(active), func(i, j int) { active[i], active[j] = active[j], active[i] })
	rand.Shuffle(len(other), func(i, j int) { other[i], other[j] = other[j], other[i] })
	all := append(active, other...)
	return all[:min(len(all), fanout)]
}

// pingAny pings peers at once and returns the name of the first that
// answers, or every error once all have failed.
func (l *Lifecycle) pingAny(ctx context.Context, peers []peer) (string, error) {
	type result struct {
		name string
		err  error
	}
	results := make(chan result, len(peers)) // late answers never block
	for _, p := range peers {
		l.pinger.Ping(p.Name, p.Addr, l.cfg.PingTimeout, func(err error) { results <- result{p.Name, err} })
	}
	var errs []error
	for range peers {
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case r := <-results:
			if r.err == nil {
				return r.name, nil
			}
			errs = append(errs, fmt.Errorf("%s: %w", r.name, r.err))
		}
	}
	return "", errors.Join(errs...)
}

// Ready is the node's cluster readiness, membership's first: joined and
// settled (Members.Ready), then gone active, which a node with other
// members does only once its inter-node transport has been proved to work.
func (l *Lifecycle) Ready() (bool, string) {
	if ok, why := l.members.Ready(); !ok {
		return false, why
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.active:
		return true, ""
	case l.linkFails == 0:
		return false, "joining: checking the inter-node connection to other members"
	}
	return false, fmt.Sprintf("no authenticated inter-node connection yet: "+LinkHint+" (asked %s; %d attempts; last error: %s)",
		strings.Join(l.linkTried, ", "), l.linkFails, strings.Join(strings.Fields(l.linkErr.Error()), " "))
}

// Drain hands this node's rooms to the others: it announces DRAINING, then
// waits until it owns no room, no other node is active to take them, or
// the deadline passes.
func (l *Lifecycle) Drain(rooms Rooms, deadline time.Time) {
	l.stateMu.Lock()
	l.stopping = true
	if err := l.members.SetState(membership.StateDraining); err != nil {
		l.log.Warn("could not announce the draining state", "err", err)
	}
	l.stateMu.Unlock()
	for {
		n := rooms.OwnedRoomCount()
		switch {
		case n == 0:
			l.log.Info("every room handed off")
			return
		case !rooms.HasActivePeers():
			l.log.Warn("no active node left to take the rooms; they go with this node", "rooms", n)
			return
		case !time.Now().Before(deadline):
			l.log.Warn("drain deadline reached with rooms still owned", "rooms", n)
			return
		}
		time.Sleep(min(l.cfg.DrainPoll, time.Until(deadline))) // polling the hand-off progress
	}
}
