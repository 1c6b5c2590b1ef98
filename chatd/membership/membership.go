package membership

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/ringchat/ringchat/chatd/backoff"
)

var (
	// ErrShutdown is returned by operations on a Membership after Shutdown.
	ErrShutdown = errors.New("membership: shut down")
	// ErrLeft is returned by operations that make no sense after Leave.
	ErrLeft = errors.New("membership: left the cluster")
	// ErrNotJoined is returned (wrapped, together with the context's error)
	// by Start when its context ends before any seed answered.
	ErrNotJoined = errors.New("membership: no seed answered")
)

// errNothingToJoin means every seed resolved to this node or to a current
// member, so there was nobody new to contact.
var errNothingToJoin = errors.New("seeds resolve only to this node or to current members")

// Join backoff bounds for Start's initial join. The first retry is quick
// because in a rolling start the seeds are usually only moments away; the
// cap keeps a node waiting for a long-dead seed from flooding the logs.
const (
	joinBackoffMin = 200 * time.Millisecond
	joinBackoffMax = 5 * time.Second
)

// maxSettleFactor bounds the settle wait: a node reports ready at the
// latest this many SettleTimes after joining, even if the view never stayed
// still that long. In a large cluster under churn a quiet window may not come
// for minutes, and a node that never becomes ready stalls a rolling update.
const maxSettleFactor = 10

// peerSyncFanout is how many members a node push/pulls with directly after
// it joins, changes state or leaves. memberlist spreads such news by gossip
// with a small retransmit budget, which in a small cluster regularly misses
// a node until the next periodic push/pull (15–30 s later); owners computed
// from views that disagree for that long would bounce requests. A direct
// push/pull with up to this many members makes them agree within a round
// trip, and each of them re-gossips the news to the rest.
const peerSyncFanout = 8

// eventKind is the kind of memberlist notification being applied.
type eventKind int

const (
	eventJoin eventKind = iota
	eventLeave
	eventUpdate
)

// Membership is this node's view of the cluster and its handle on
// memberlist. All methods are safe for concurrent use.
type Membership struct {
	cfg      Config
	seeds    []seedAddr
	log      *slog.Logger
	list     *memberlist.Memberlist
	resolver *net.Resolver

	// ctx ends on Leave or Shutdown; it stops Start's join, the rejoin loop
	// and the sync loop, since none makes sense for a node going away.
	ctx    context.Context
	cancel context.CancelFunc
	// wg counts Start's join, the rejoin loop and the sync loop: Shutdown
	// waits for them, so memberlist is never called after it has been shut
	// down.
	wg sync.WaitGroup
	// syncKick asks the sync loop for a direct push/pull with peers (see
	// peerSyncFanout); capacity 1, so requests made while one is pending
	// coalesce.
	syncKick chan struct{}
	// conflictKick tells the sync loop that nameConflicts changed (see
	// noteConflict); capacity 1, coalescing like syncKick.
	conflictKick chan struct{}

	// lifeMu serializes Start, Leave and Shutdown. The flags are atomics so
	// that Ready and SetState can read them without waiting for a Leave
	// that is blocked on its broadcast.
	lifeMu       sync.Mutex
	started      atomic.Bool
	left         atomic.Bool
	shutdown     atomic.Bool
	shutdownDone chan struct{}

	// setMu serializes SetState so that concurrent calls broadcast in the
	// order their changes were applied.
	setMu sync.Mutex
	// metaMu guards meta and metaEnc; memberlist reads metaEnc through
	// NodeMeta from its own goroutines.
	metaMu  sync.Mutex
	meta    Meta
	metaEnc []byte

	// mu guards the view, join progress and subscribers. It is taken from
	// memberlist's callbacks, so nothing may call memberlist while holding
	// it.
	mu          sync.Mutex
	selfAddr    string // this node's gossip address, as memberlist last announced it
	members     map[string]Member
	view        View
	lastChange  time.Time
	joined      bool // another member was seen, or this node bootstrapped
	joinedAt    time.Time
	attempts    int   // join attempts that found no other member, before joined
	lastJoinErr error // the latest of those attempts' error
	ready       bool  // latched by Ready; see Ready
	// nameConflicts are addresses of nodes that took a member's name while
	// memberlist still held the old entry, with when to push/pull with
	// them again; see noteConflict.
	nameConflicts map[string]time.Time
	subs          map[chan View]struct{}
	subsClosed    bool

	// refutes counts memberlist's refutations of suspicions of this node.
	refutes atomic.Uint64

	// keyring is memberlist's gossip keyring (nil without encryption);
	// keyMu serializes SetKeys.
	keyring *memberlist.Keyring
	keyMu   sync.Mutex
}

// Refutes returns how many times memberlist refuted a suspect or dead
// message about this node: each means the others suspected it (or declared
// it dead) and may have acted on it. The cluster watches it to claim its
// rooms again (see chatd/cluster's pause detection).
func (m *Membership) Refutes() uint64 { return m.refutes.Load() }

// New validates cfg and creates the memberlist instance, which starts
// listening on the gossip port at once; it does not contact any seed (see
// Start).
func New(cfg Config) (*Membership, error) {
	cfg = cfg.withDefaults()
	seeds, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	enc, err := cfg.Meta.encode()
	if err != nil {
		return nil, fmt.Errorf("membership: initial meta: %w", err)
	}
	m := &Membership{
		cfg:           cfg,
		seeds:         seeds,
		log:           cfg.Logger, // the caller names the component, as for every package
		resolver:      net.DefaultResolver,
		shutdownDone:  make(chan struct{}),
		syncKick:      make(chan struct{}, 1),
		conflictKick:  make(chan struct{}, 1),
		nameConflicts: make(map[string]time.Time),
		meta:          cfg.Meta,
		metaEnc:       enc,
		members:       make(map[string]Member),
		view:          View{Self: cfg.NodeName},
		subs:          make(map[chan View]struct{}),
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())

	// memberlist calls our delegates (NotifyJoin for this node itself)
	// from inside Create, so everything they touch is initialized above.
	mc := cfg.memberlistConfig(&delegates{m: m}, newLogBridge(cfg.Logger, &m.refutes))
	m.keyring = mc.Keyring
	list, err := memberlist.Create(mc)
	if err != nil {
		m.cancel()
		return nil, fmt.Errorf("membership: create memberlist on %s: %w",
			net.JoinHostPort(cfg.BindAddr, fmt.Sprint(cfg.BindPort)), err)
	}
	m.list = list
	m.log.Info("gossip listening",
		"node", cfg.NodeName,
		"gossip_addr", m.GossipAddr(),
		"profile", cfg.Profile,
		"cluster_label", cfg.ClusterLabel,
		"encrypted", len(cfg.Keys) > 0,
		"gossip_keys", len(cfg.Keys),
		"seeds", cfg.Seeds,
		"bootstrap", cfg.Bootstrap,
	)
	return m, nil
}

// Start joins the cluster through the seeds, then starts the rejoin loop
// and the sync loop (direct push/pulls after changes; see peerSyncFanout).
//
// It retries with exponential backoff until a seed answers or ctx ends. A
// Bootstrap node makes one attempt and, if no seed answers, starts a new
// cluster alone (the rejoin loop merges it with the others later if they
// appear). A node without seeds and without Bootstrap returns at once and
// waits for another node to join it.
//
// If ctx ends first, Start returns an error wrapping ErrNotJoined and the
// context's error, but the rejoin loop is started anyway: the node keeps
// trying every RejoinInterval and becomes ready once a seed answers. A caller
// that treats the error as fatal should call Shutdown.
func (m *Membership) Start(ctx context.Context) error {
	m.lifeMu.Lock()
	switch {
	case m.shutdown.Load():
		m.lifeMu.Unlock()
		return ErrShutdown
	case m.left.Load():
		m.lifeMu.Unlock()
		return ErrLeft
	case m.started.Load():
		m.lifeMu.Unlock()
		return errors.New("membership: already started")
	}
	m.started.Store(true)
	m.wg.Add(1) // the initial join; Shutdown waits for it
	m.lifeMu.Unlock()

	jctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(m.ctx, cancel)
	err := m.initialJoin(jctx)
	stop()
	cancel()
	m.wg.Done()

	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if m.shutdown.Load() {
		return ErrShutdown
	}
	if m.left.Load() {
		return ErrLeft
	}
	m.wg.Add(1)
	go m.syncLoop()
	if len(m.seeds) > 0 {
		m.wg.Add(1)
		go m.rejoinLoop()
	}
	return err
}

// initialJoin is Start's join: see Start for the policy.
func (m *Membership) initialJoin(ctx context.Context) error {
	if len(m.seeds) == 0 {
		if m.cfg.Bootstrap {
			m.markBootstrapped(errors.New("no seeds configured"))
			return nil
		}
		m.log.Warn("no seeds configured and bootstrap is off: waiting for another node to join this one")
		return nil
	}
	retry := backoff.Backoff{Base: joinBackoffMin, Max: joinBackoffMax, Jitter: backoff.Spread}
	for attempt := 1; ; attempt++ {
		joined, err := m.joinSeeds(ctx)
		if m.isJoined() {
			m.log.Info("seeds joined", "via", joined, "members", m.View().Names(), "attempt", attempt)
			m.kickSync()
			return nil
		}
		if err == nil {
			// A seed answered but brought no other member: it can
			// only have been this node under another address.
			err = errors.New("seeds answered but no other member was found")
		}
		m.recordJoinFailure(err)
		if m.cfg.Bootstrap {
			m.markBootstrapped(err)
			return nil
		}
		if ctx.Err() != nil {
			return m.startAbortedError(ctx, attempt, err)
		}
		delay := retry.Next()
		m.log.Warn("no seed answered; retrying",
			"attempt", attempt,
			"retry_in", delay.Round(time.Millisecond).String(),
			"seeds", m.cfg.Seeds,
			"err", err,
			"hint", "if the seeds are up, check that this node's gossip key and cluster label match theirs",
		)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return m.startAbortedError(ctx, attempt, err)
		case <-t.C:
		}
	}
}

// startAbortedError explains why Start gave up: the node is going away, or
// the caller's context ended with no seed having answered.
func (m *Membership) startAbortedError(ctx context.Context, attempts int, last error) error {
	switch {
	case m.shutdown.Load():
		return ErrShutdown
	case m.left.Load():
		return ErrLeft
	}
	return fmt.Errorf("%w after %d attempts (last error: %v; check the seeds, gossip key and cluster label): %w",
		ErrNotJoined, attempts, last, ctx.Err())
}

// rejoinLoop periodically joins seeds that are not members. It is what
// heals a partition (memberlist forgets unreachable nodes and never probes
// them again) and merges two nodes that bootstrapped separately.
func (m *Membership) rejoinLoop() {
	defer m.wg.Done()
	t := time.NewTimer(jitter(m.cfg.RejoinInterval))
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		m.rejoin()
		t.Reset(jitter(m.cfg.RejoinInterval))
	}
}

// rejoin is one round of the rejoin loop.
func (m *Membership) rejoin() {
	wasJoined := m.isJoined()
	joined, err := m.joinSeeds(m.ctx)
	if m.ctx.Err() != nil {
		return
	}
	if len(joined) == 0 && m.isJoined() {
		// Anti-entropy with one member. A node cut off long enough to be
		// declared dead, whose every seed is back in its own view (a seed
		// that refuted the node's "dead" message, say), has no seed left to
		// join; the others no longer probe or gossip to it, and the only
		// thing that tells it to refute its death is a push/pull, which
		// memberlist makes every 15-30 s. One here bounds the heal by the
		// rejoin interval instead. (A push/pull of a healthy cluster is a
		// no-op merge; a round that joined a seed has had its push/pull,
		// and kickSync below adds more.)
		if _, err := m.pushPullPeers(m.ctx, 1); err != nil && m.ctx.Err() == nil {
			m.log.Debug("rejoin: anti-entropy push/pull failed", "err", err)
		}
	}
	switch {
	case len(joined) > 0:
		m.log.Info("joined seeds that were not members", "addrs", joined, "members", m.View().Names(), "was_alone", !wasJoined)
		m.kickSync()
	case errors.Is(err, errNothingToJoin):
		// Every seed is a member: the normal steady state.
	case !m.isJoined():
		m.recordJoinFailure(err)
		m.log.Warn("still not joined: no seed answered",
			"seeds", m.cfg.Seeds,
			"err", err,
			"hint", "if the seeds are up, check that this node's gossip key and cluster label match theirs",
		)
	default:
		// Joined, but some seed address is not a member and did not
		// answer: typically a pod that is starting or stopping.
		m.log.Debug("rejoin: some seeds did not answer", "err", err)
	}
}

// kickSync asks the sync loop for a direct push/pull with peers, without
// waiting.
func (m *Membership) kickSync() {
	select {
	case m.syncKick <- struct{}{}:
	default: // one is already pending; it will carry this change too
	}
}

// syncLoop serves kickSync (see peerSyncFanout) and retries name
// conflicts (see noteConflict).
func (m *Membership) syncLoop() {
	defer m.wg.Done()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-m.syncKick:
			if n, err := m.pushPullPeers(m.ctx, peerSyncFanout); err != nil && m.ctx.Err() == nil {
				// Not fatal: gossip and the periodic push/pull
				// still carry the change, only later.
				m.log.Debug("direct sync with peers incomplete", "synced", n, "err", err)
			}
		case <-m.conflictKick:
		case <-retry.C:
			m.retryNameConflicts()
		}
		if next, ok := m.nextConflictRetry(); ok {
			retry.Reset(time.Until(next))
		}
	}
}

// noteConflict handles memberlist's report that a node at addr
// takes the name of a member memberlist still holds at another address.
// The usual cause is a pod restarted with a new IP before the cluster has
// declared its previous instance dead. memberlist rejects the newcomer and
// will not reconsider it until the newcomer's next push/pull, up to
// PushPullInterval (30 s on a LAN) later; meanwhile the restarted node sees
// the cluster but the cluster does not see it, so they disagree on owners.
// Pulling the newcomer's state again once the old entry can have been
// reclaimed admits it within a few seconds instead.
func (m *Membership) noteConflict(addr string) {
	if m.cfg.DeadNodeReclaimTime <= 0 {
		return // reclaiming is disabled: retrying cannot succeed
	}
	m.mu.Lock()
	if _, pending := m.nameConflicts[addr]; !pending {
		m.nameConflicts[addr] = time.Now().Add(m.conflictRetryDelay())
	}
	m.mu.Unlock()
	select {
	case m.conflictKick <- struct{}{}:
	default:
	}
}

// conflictRetryDelay is how long after a name conflict the newcomer is pulled
// again: the reclaim time plus a margin for the old entry to be declared
// dead. A newcomer that is still refused then is noted again and retried.
func (m *Membership) conflictRetryDelay() time.Duration {
	return m.cfg.DeadNodeReclaimTime + time.Second
}

// nextConflictRetry returns the earliest pending name conflict retry, if any.
func (m *Membership) nextConflictRetry() (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var next time.Time
	for _, due := range m.nameConflicts {
		if next.IsZero() || due.Before(next) {
			next = due
		}
	}
	return next, !next.IsZero()
}

// retryNameConflicts push/pulls with every newcomer whose retry is due. If the
// old entry is dead by now the newcomer is admitted; if not, memberlist
// reports the conflict again and noteConflict schedules another try.
func (m *Membership) retryNameConflicts() {
	now := time.Now()
	var due []string
	m.mu.Lock()
	for addr, at := range m.nameConflicts {
		if !at.After(now) {
			due = append(due, addr)
			delete(m.nameConflicts, addr)
		}
	}
	m.mu.Unlock()
	for _, addr := range due {
		if m.ctx.Err() != nil {
			return
		}
		if _, err := m.list.Join([]string{addr}); err != nil {
			// Gone, or not a member of this cluster: nothing to admit.
			m.log.Debug("node in a name conflict did not answer", "addr", addr, "err", flattenJoinError(addr, err))
		}
	}
}

// pushPullPeers exchanges full state with up to fanout random other
// members, one at a time so that ctx is honoured between them. It returns
// how many answered.
func (m *Membership) pushPullPeers(ctx context.Context, fanout int) (int, error) {
	v := m.View()
	self := m.GossipAddr()
	var addrs []string
	for _, mem := range v.Members {
		if mem.Name != v.Self && mem.GossipAddr != self {
			addrs = append(addrs, mem.GossipAddr)
		}
	}
	rand.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
	addrs = addrs[:min(len(addrs), fanout)]
	var errs []error
	n := 0
	for _, a := range addrs {
		if err := ctx.Err(); err != nil {
			errs = append(errs, err)
			break
		}
		// memberlist's Join is a push/pull that merges both sides'
		// state; with a member's address it is exactly an on-demand
		// anti-entropy round.
		if _, err := m.list.Join([]string{a}); err != nil {
			errs = append(errs, flattenJoinError(a, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// joinSeeds resolves the seeds and joins each address that is neither this
// node nor a current member, one at a time so that ctx is honoured between
// addresses (a single memberlist Join can take up to its TCP timeout). It
// returns the addresses that answered and, if none did, why.
func (m *Membership) joinSeeds(ctx context.Context) ([]string, error) {
	addrs, err := m.resolveSeeds(ctx)
	if len(addrs) == 0 {
		if err == nil {
			err = errNothingToJoin
		}
		return nil, err
	}
	errs := []error{err} // resolution errors, if any
	var joined []string
	for _, a := range addrs {
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		if _, err := m.list.Join([]string{a}); err != nil {
			errs = append(errs, flattenJoinError(a, err))
			continue
		}
		joined = append(joined, a)
	}
	if len(joined) > 0 {
		return joined, nil
	}
	return nil, errors.Join(errs...)
}

// flattenJoinError turns memberlist's multi-line multierror into one line
// per cause, which reads better in a structured log.
func flattenJoinError(addr string, err error) error {
	var multi interface{ WrappedErrors() []error }
	if errors.As(err, &multi) {
		if inner := multi.WrappedErrors(); len(inner) > 0 {
			return errors.Join(inner...)
		}
	}
	return fmt.Errorf("join %s: %w", addr, err)
}

// resolveSeeds returns the seeds' addresses as "ip:port", resolving names
// to all their addresses, without this node's own address, current members'
// addresses and duplicates. Names that fail to resolve are reported in the
// error while the others are still returned.
func (m *Membership) resolveSeeds(ctx context.Context) ([]string, error) {
	skip := map[string]bool{m.GossipAddr(): true}
	for _, mem := range m.View().Members {
		skip[mem.GossipAddr] = true
	}
	var addrs []string
	var errs []error
	add := func(ip string, port int) {
		if parsed := net.ParseIP(ip); parsed != nil {
			ip = parsed.String() // canonical, as memberlist prints member addresses
		}
		a := net.JoinHostPort(ip, fmt.Sprint(port))
		if !skip[a] {
			skip[a] = true
			addrs = append(addrs, a)
		}
	}
	for _, s := range m.seeds {
		if net.ParseIP(s.host) != nil {
			add(s.host, s.port)
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, seedLookupTimeout)
		hosts, err := m.resolver.LookupHost(lctx, s.host)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("resolve seed %q: %w", s.host, err))
			continue
		}
		for _, h := range hosts {
			add(h, s.port)
		}
	}
	return addrs, errors.Join(errs...)
}

// recordJoinFailure notes a join attempt that found nobody, for Ready's
// reason. Failures after joining are routine churn and not recorded.
func (m *Membership) recordJoinFailure(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.joined {
		return
	}
	m.attempts++
	m.lastJoinErr = err
}

// markBootstrapped lets a Bootstrap node count as joined while alone.
func (m *Membership) markBootstrapped(why error) {
	m.mu.Lock()
	first := !m.joined
	if first {
		m.joined = true
		m.joinedAt = time.Now()
	}
	m.mu.Unlock()
	if first {
		m.log.Info("bootstrapping a new cluster alone", "reason", why)
	}
}

// isJoined reports whether another member has been seen or this node
// bootstrapped.
func (m *Membership) isJoined() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.joined
}

// applyNode applies one memberlist notification to the view. It runs on
// memberlist's goroutines under memberlist's node lock, so it must be quick
// and must not call memberlist.
func (m *Membership) applyNode(kind eventKind, n *memberlist.Node) {
	mem := Member{Name: n.Name, GossipAddr: n.Address()}
	var metaErr error
	if kind != eventLeave {
		mem.Meta, metaErr = decodeMeta(n.Meta)
	}
	self := n.Name == m.cfg.NodeName

	m.mu.Lock()
	if self && kind != eventLeave {
		m.selfAddr = mem.GossipAddr
	}
	old, had := m.members[n.Name]
	if kind == eventLeave {
		if !had {
			m.mu.Unlock()
			return
		}
		delete(m.members, n.Name)
	} else {
		if had && old == mem {
			m.mu.Unlock()
			return
		}
		m.members[n.Name] = mem
	}
	firstPeer := false
	if kind == eventJoin && !self && !m.joined {
		m.joined, m.joinedAt, firstPeer = true, time.Now(), true
	}
	v := m.rebuildLocked()
	m.mu.Unlock()

	// Logging happens outside mu: a slow log handler must not hold up
	// View callers, though it still holds up memberlist (whose lock we are
	// under), which is why these are few and short.
	if metaErr != nil {
		m.log.Warn("member advertises unreadable metadata; treating it as joining",
			"member", n.Name, "addr", mem.GossipAddr, "err", metaErr)
	}
	switch {
	case kind == eventLeave:
		// memberlist does not tell a clean leave from a failure here
		// (Node.State is not maintained), so the log does not guess.
		m.log.Info("member gone (left or declared failed)", "member", n.Name, "addr", old.GossipAddr, "version", v.Version, "members", len(v.Members))
	case !had:
		m.log.Info("member joined", "member", n.Name, "addr", mem.GossipAddr, "state", mem.Meta.State, "self", self, "version", v.Version, "members", len(v.Members))
	default:
		m.log.Info("member updated", "member", n.Name, "addr", mem.GossipAddr, "state", mem.Meta.State, "previous_state", old.Meta.State, "version", v.Version)
	}
	if firstPeer {
		m.log.Info("joined cluster: first other member seen", "member", n.Name)
	}
}

// rebuildLocked publishes a new view from members, bumps the version and
// offers it to every subscriber. m.mu must be held.
func (m *Membership) rebuildLocked() View {
	members := make([]Member, 0, len(m.members))
	for _, mem := range m.members {
		members = append(members, mem)
	}
	slices.SortFunc(members, func(a, b Member) int { return cmp.Compare(a.Name, b.Name) })
	m.view = View{Version: m.view.Version + 1, Self: m.cfg.NodeName, Members: members}
	m.lastChange = time.Now()
	for ch := range m.subs {
		offer(ch, m.view)
	}
	return m.view
}

// offer puts v in ch (capacity 1) without blocking, replacing a view the
// subscriber has not read yet: a subscriber only ever needs the newest.
// Callers hold m.mu, so nobody else sends on ch concurrently and the second
// send always finds room.
func offer(ch chan View, v View) {
	select {
	case ch <- v:
		return
	default:
	}
	select {
	case <-ch:
	default:
	}
	select {
	case ch <- v:
	default:
	}
}

// View returns the current view. Its Members slice is shared and must not
// be modified.
func (m *Membership) View() View {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.view
}

// Subscribe returns a channel that receives the current view at once and
// then the latest view whenever it changes. Delivery coalesces: a subscriber
// that falls behind skips to the newest view and never blocks memberlist.
// The returned function unsubscribes and closes the channel; it may be
// called more than once. Shutdown closes every subscriber's channel.
func (m *Membership) Subscribe() (<-chan View, func()) {
	ch := make(chan View, 1)
	m.mu.Lock()
	if m.subsClosed {
		m.mu.Unlock()
		close(ch)
		return ch, func() {}
	}
	m.subs[ch] = struct{}{}
	ch <- m.view
	m.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			if _, ok := m.subs[ch]; ok {
				delete(m.subs, ch)
				close(ch)
			}
		})
	}
}

// SetState changes this node's advertised state and broadcasts it. The
// local view reflects the change before SetState returns. SetState waits
// up to a few seconds for the broadcast to go out; if it does not in that
// time, the change is still applied and spreads through gossip and
// push/pull, so that is logged rather than returned as an error.
func (m *Membership) SetState(s State) error {
	if m.shutdown.Load() {
		return ErrShutdown
	}
	if m.left.Load() {
		return ErrLeft
	}
	m.setMu.Lock()
	defer m.setMu.Unlock()

	m.metaMu.Lock()
	prev := m.meta
	next := prev
	next.State = s
	enc, err := next.encode()
	if err != nil {
		m.metaMu.Unlock()
		return fmt.Errorf("membership: set state %q: %w", s, err)
	}
	m.meta, m.metaEnc = next, enc
	m.metaMu.Unlock()

	if prev.State == s {
		return nil
	}
	m.log.Info("advertising new state", "from", prev.State, "to", s)
	if err := m.list.UpdateNode(updateNodeTimeout); err != nil {
		m.log.Warn("state change not yet broadcast; it will still spread by gossip and push/pull",
			"state", s, "err", err)
	}
	m.kickSync()
	return nil
}

// encodedMeta returns the current encoded metadata for NodeMeta.
func (m *Membership) encodedMeta() []byte {
	m.metaMu.Lock()
	defer m.metaMu.Unlock()
	return m.metaEnc
}

// Ready reports whether this node is part of a settled cluster and, if not,
// why, in words meant for an operator reading a readiness probe.
//
// It is false until the node has joined (seen another member) or
// bootstrapped, and then until the view has been unchanged for SettleTime.
// A node with seeds, without Bootstrap, that has never seen another member
// stays not ready with a reason pointing at the gossip key and cluster label,
// the usual causes when the seeds are up. Once true, Ready stays true until
// Leave or Shutdown: later view changes are normal churn, and a readiness
// that flipped on them would pull every pod out of its Service during a
// rolling update.
func (m *Membership) Ready() (bool, string) {
	switch {
	case m.shutdown.Load():
		return false, "membership is shut down"
	case m.left.Load():
		return false, "this node has left the cluster"
	case !m.started.Load():
		return false, "membership not started"
	}
	m.mu.Lock()
	if m.ready {
		m.mu.Unlock()
		return true, ""
	}
	if !m.joined {
		reason := m.notJoinedReasonLocked()
		m.mu.Unlock()
		return false, reason
	}
	since := m.lastChange
	if m.joinedAt.After(since) {
		since = m.joinedAt
	}
	wait := m.cfg.SettleTime - time.Since(since)
	forced := time.Since(m.joinedAt) >= maxSettleFactor*m.cfg.SettleTime
	if wait > 0 && !forced {
		n := len(m.view.Members)
		m.mu.Unlock()
		return false, fmt.Sprintf("membership view settling: %d members, needs %s without changes (%s to go)",
			n, m.cfg.SettleTime, wait.Round(time.Millisecond))
	}
	m.ready = true
	v := m.view
	m.mu.Unlock()
	if wait > 0 {
		m.log.Warn("membership view kept changing; reporting ready anyway",
			"members", v.Names(), "version", v.Version, "waited", (maxSettleFactor * m.cfg.SettleTime).String())
	} else {
		m.log.Info("membership ready", "members", v.Names(), "version", v.Version)
	}
	return true, ""
}

// notJoinedReasonLocked explains why a node has not joined. m.mu must be
// held.
func (m *Membership) notJoinedReasonLocked() string {
	if len(m.seeds) == 0 {
		return "alone: no seeds configured, bootstrap off, and no other member has joined this node"
	}
	if m.attempts == 0 {
		return "joining: contacting seeds " + strings.Join(m.cfg.Seeds, ", ")
	}
	return fmt.Sprintf("no other member reachable: check the gossip key and cluster label, and that the seeds are up (seeds %s; %d join attempts; last error: %v)",
		strings.Join(m.cfg.Seeds, ", "), m.attempts, oneLine(m.lastJoinErr))
}

// oneLine flattens a possibly multi-line error for a one-line reason.
func oneLine(err error) string {
	if err == nil {
		return "none"
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}

// Leave announces that this node is leaving, so others drop it at once
// instead of after failure detection, and stops joining seeds. It waits up
// to timeout for the announcement to go out (at scale allow ~20s), and
// within the same timeout tells up to peerSyncFanout members directly, since
// gossip can miss one. The node
// keeps gossiping until Shutdown, so it can still answer peers meanwhile.
// Calling it again is a no-op.
func (m *Membership) Leave(timeout time.Duration) error {
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if m.shutdown.Load() {
		return ErrShutdown // memberlist panics on Leave after Shutdown
	}
	if m.left.Load() {
		return nil
	}
	m.left.Store(true)
	m.cancel() // a leaving node must not re-join through the rejoin loop
	m.log.Info("leaving cluster", "timeout", timeout.String())
	start := time.Now()
	if err := m.list.Leave(timeout); err != nil {
		return fmt.Errorf("membership: leave: %w", err)
	}
	// The leave broadcast, like any gossip, can miss a node; such a node
	// keeps this one as alive (it still answers probes until Shutdown)
	// until its next push/pull. Tell peers directly, within what is left
	// of the timeout.
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, start.Add(timeout))
		defer cancel()
	}
	n, err := m.pushPullPeers(ctx, peerSyncFanout)
	if err != nil {
		m.log.Debug("direct leave notice incomplete; peers will still learn by gossip", "synced", n, "err", err)
	}
	m.log.Info("left cluster", "told_directly", n)
	return nil
}

// Shutdown stops Start's join, the rejoin loop and the sync loop, waits for
// them, and stops memberlist. Without a prior Leave, other nodes notice only through
// failure detection. Subscriber channels are closed. It is idempotent;
// concurrent calls return once the first has finished.
func (m *Membership) Shutdown() error {
	m.lifeMu.Lock()
	if m.shutdown.Load() {
		m.lifeMu.Unlock()
		<-m.shutdownDone
		return nil
	}
	m.shutdown.Store(true)
	m.cancel()
	m.lifeMu.Unlock()
	defer close(m.shutdownDone)

	// Wait for our goroutines first: they call memberlist, which must
	// not happen after it has been shut down. An in-flight Join ends within
	// memberlist's TCP timeout.
	m.wg.Wait()
	err := m.list.Shutdown()

	m.mu.Lock()
	m.subsClosed = true
	for ch := range m.subs {
		close(ch)
		delete(m.subs, ch)
	}
	m.mu.Unlock()

	if err != nil {
		return fmt.Errorf("membership: shutdown memberlist: %w", err)
	}
	m.log.Info("membership shut down")
	return nil
}

// GossipAddr returns the host:port this node advertises for gossip, which
// is what seeds should point at.
func (m *Membership) GossipAddr() string {
	// Not memberlist's LocalNode: it returns a pointer into memberlist's
	// state that memberlist rewrites under its own lock, so reading it
	// races with every alive message about this node (UpdateNode, refutes).
	// The address is recorded from memberlist's notifications instead,
	// which run under that lock.
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.selfAddr
}

// jitter spreads d by ±10% (backoff.Spread) so that nodes started together
// do not resolve and dial seeds in lockstep.
func jitter(d time.Duration) time.Duration {
	b := backoff.Backoff{Base: d, Max: d, Jitter: backoff.Spread}
	return b.Delay(1)
}
