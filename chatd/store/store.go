package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Errors. Every error the store returns wraps one of these (test with
// errors.Is) together with the room, the numbers and the cause.
var (
	// ErrFull: the filesystem has less free space than Options.ReserveBytes,
	// or Pebble ran out of space. Writes are refused; reads work; writes are
	// accepted again once space is back.
	ErrFull = errors.New("store: disk full")
	// ErrFailed: the storage engine reported an I/O error (other than a
	// full disk it recovered from) or an internal failure. Writes are
	// refused until the store is closed and opened again; reads go on.
	ErrFailed = errors.New("store: storage failed")
	// ErrCorrupt: the files are damaged, or do not hold everything that
	// was reported durable. Open refuses such a directory; a read that
	// meets damage returns it.
	ErrCorrupt = errors.New("store: corrupt")
	// ErrFormat: the directory is not a store, or one of another format.
	ErrFormat = errors.New("store: not a store of this format")
	// ErrLocked: another process (or another Store) has the directory open.
	ErrLocked = errors.New("store: directory in use")
	// ErrClosed: the store is closed.
	ErrClosed = errors.New("store: closed")
	// ErrNoRoom: the store holds nothing for the room.
	ErrNoRoom = errors.New("store: no such room")
	// ErrInvalid: the write breaks the log's rules (a gap, a term going
	// backwards, a bad room name, bad metadata). Nothing was written.
	ErrInvalid = errors.New("store: invalid write")
	// ErrStaleTerm: the term is older than the one already recorded.
	ErrStaleTerm = errors.New("store: stale term")

	errLockHeld = errors.New("lock held")
)

// Defaults of Options.
const (
	DefaultCacheBytes        = 32 << 20
	DefaultMemTableBytes     = 16 << 20
	DefaultReserveBytes      = 128 << 20
	DefaultRetentionInterval = time.Minute
)

// Options configure a Store. Only Dir is required.
type Options struct {
	// Dir is the store's directory, created if missing.
	Dir string
	// MaxAge removes messages older than this (by their timestamp); 0
	// keeps them forever.
	MaxAge time.Duration
	// MaxMessages keeps at most this many messages per room; 0 is
	// unlimited.
	MaxMessages uint64
	// RetentionInterval is the period of the retention pass (default one
	// minute). The pass only runs when MaxAge or MaxMessages is set.
	RetentionInterval time.Duration
	// ReserveBytes is the free space kept on the filesystem: below it
	// writes fail with ErrFull, so that Pebble's flushes and compactions
	// (which need room to finish, and turn a failed write into a crash)
	// always have space. Default DefaultReserveBytes; negative disables the
	// check (and the ballast). A quarter of it is held in a ballast file
	// that is given back to Pebble if it ever meets a full disk anyway.
	ReserveBytes int64
	// CacheBytes is Pebble's block cache (default DefaultCacheBytes).
	CacheBytes int64
	// MemTableBytes is the size of one Pebble memtable (default
	// DefaultMemTableBytes). At most two are in memory at once.
	MemTableBytes int64
	// Logger receives the store's and Pebble's logs (default slog.Default).
	Logger *slog.Logger
	// Observer receives measurements (default: none).
	Observer Observer
	// Now is the clock of retention by age (default time.Now).
	Now func() time.Time

	// noAutoCompactions lets a test control the MANIFEST's edits.
	noAutoCompactions bool
}

// Observer receives the store's measurements. Its methods are called from
// the store's goroutines and must return quickly.
type Observer interface {
	// GroupCommit reports one group commit: how long the WAL sync and the
	// watermark sync took together, how many writes and payload bytes it
	// made durable, and its error.
	GroupCommit(latency time.Duration, writes, bytes int, err error)
	// WriteRefused reports a write refused before it reached Pebble
	// (ErrFull, ErrFailed, ErrClosed; not ErrInvalid).
	WriteRefused(err error)
	// Retention reports one retention pass: how long it took, how many
	// rooms it trimmed and how many messages it removed.
	Retention(took time.Duration, rooms int, removed uint64, err error)
}

type nopObserver struct{}

func (nopObserver) GroupCommit(time.Duration, int, int, error)  {}
func (nopObserver) WriteRefused(error)                          {}
func (nopObserver) Retention(time.Duration, int, uint64, error) {}

// roomState is the in-memory index entry of one room.
type roomState struct {
	meta RoomMeta
	hash uint64 // its share of the metadata digest
	gen  uint64 // changes on Reset, TruncateAfter and Delete
}

// pendingWrite is a write waiting for the next group commit.
type pendingWrite struct {
	num   uint64
	bytes int
	done  func(error)
}

// Store is a node's durable store of room logs. Its methods are safe for
// concurrent use; callers serialise the writes of one room themselves
// (their per-room lock), the store orders writes of different rooms.
type Store struct {
	opts   Options
	dir    string
	log    *slog.Logger
	obs    Observer
	lock   *os.File
	synced *syncedFile
	cache  *pebble.Cache
	db     *pebble.DB
	fatal  atomic.Pointer[error] // first failure Pebble reported; sticky
	// durableNum is the highest write number known durable (WAL synced and
	// recorded in SYNCED).
	durableNum atomic.Uint64
	ballast    ballast

	// life is held shared by reads and exclusively by Close, so Pebble is
	// never closed under a read.
	life       sync.RWMutex
	readClosed bool

	// wmu serialises writes: validation, the Pebble commit and the index
	// update happen one write at a time, so write numbers follow commit
	// order. Writers read the index without mu (only they change it).
	wmu   sync.Mutex
	space spaceCheck // guarded by wmu
	// mu guards the index, for the moment a writer updates it after its
	// commit and a reader takes a room's bounds. Readers never wait for a
	// Pebble commit (which can stall when the disk is full).
	mu       sync.RWMutex
	closed   bool // set under wmu and mu
	rooms    map[string]*roomState
	cursors  map[string]Cursor
	gen      uint64
	writeNum uint64
	digest   uint64
	messages uint64
	pending  []pendingWrite

	kick   chan struct{}
	notify chan notice
	quit   chan struct{}
	cancel context.CancelFunc
	wg     sync.WaitGroup // syncer and retention
	nwg    sync.WaitGroup // notifier

	stats struct {
		sync.Mutex
		lastSync     time.Duration
		syncs        uint64
		syncedWrites uint64
		retention    RetentionStats
	}
}

// Open opens the store in opts.Dir, creating it when the directory is
// missing or empty. It refuses, with a clear error, a directory of another
// format (ErrFormat), one another process holds (ErrLocked), and one whose
// files are damaged or do not hold everything reported durable
// (ErrCorrupt). When it returns, the metadata of every room is in memory.
func Open(opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("store: Options.Dir is empty")
	}
	if opts.CacheBytes <= 0 {
		opts.CacheBytes = DefaultCacheBytes
	}
	if opts.MemTableBytes <= 0 {
		opts.MemTableBytes = DefaultMemTableBytes
	}
	if opts.ReserveBytes == 0 {
		opts.ReserveBytes = DefaultReserveBytes
	}
	if opts.RetentionInterval <= 0 {
		opts.RetentionInterval = DefaultRetentionInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Observer == nil {
		opts.Observer = nopObserver{}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Store{
		opts:    opts,
		dir:     opts.Dir,
		log:     opts.Logger.With("component", "store", "dir", opts.Dir),
		obs:     opts.Observer,
		rooms:   make(map[string]*roomState),
		cursors: make(map[string]Cursor),
	}
	if err := s.open(); err != nil {
		s.release()
		return nil, err
	}
	s.kick = make(chan struct{}, 1)
	s.notify = make(chan notice, 64)
	s.quit = make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(1)
	go s.syncLoop()
	s.nwg.Add(1)
	go s.notifyLoop()
	if opts.MaxAge > 0 || opts.MaxMessages > 0 {
		s.wg.Add(1)
		go s.retentionLoop(ctx)
	}
	return s, nil
}

func (s *Store) open() error {
	if err := os.MkdirAll(s.dir, 0o750); err != nil {
		return fmt.Errorf("store: create %s: %w", s.dir, err)
	}
	lock, err := lockDir(filepath.Join(s.dir, lockFileName))
	if errors.Is(err, errLockHeld) {
		return fmt.Errorf("%w: %s is open in another process (or Store)", ErrLocked, s.dir)
	}
	if err != nil {
		return fmt.Errorf("store: lock %s: %w", s.dir, err)
	}
	s.lock = lock
	fresh, err := s.checkFormat()
	if err != nil {
		return err
	}
	if fresh {
		if err := s.initDir(); err != nil {
			return err
		}
	}
	if s.synced, err = openSyncedFile(s.dir); err != nil {
		return err
	}
	s.ballast = ballast{path: filepath.Join(s.dir, ballastName), size: s.opts.ReserveBytes / 4}
	if s.opts.ReserveBytes < 0 {
		s.ballast.size = 0
	}
	s.space = spaceCheck{dir: s.dir, reserve: s.opts.ReserveBytes}

	s.cache = pebble.NewCache(s.opts.CacheBytes)
	popts := s.pebbleOptions(s.synced.last > 0)
	db, err := pebble.Open(s.dir, popts)
	if err != nil {
		if isDamage(err) {
			return fmt.Errorf("%w: %s: %w", ErrCorrupt, s.dir, err)
		}
		if errors.Is(err, pebble.ErrDBDoesNotExist) {
			return fmt.Errorf("%w: %s has no data, but write %d was reported durable", ErrCorrupt, s.dir, s.synced.last)
		}
		return fmt.Errorf("store: open %s: %w", s.dir, err)
	}
	s.db = db
	if err := s.load(); err != nil {
		return err
	}
	if err := s.failure(); err != nil {
		return fmt.Errorf("store: open %s: %w", s.dir, err)
	}
	if err := s.ballast.ensure(s.log, s.opts.ReserveBytes); err != nil {
		// Too little space for the ballast: refuse writes until it fits.
		s.space.forceFull()
	}
	return nil
}

// isDamage tells whether an error of pebble.Open means damaged files
// rather than a failure to open them: Pebble marks what it recognises as
// corruption, but its consistency check at Open (every table the MANIFEST
// lists exists, of the recorded size) returns plain errors.
func isDamage(err error) bool {
	return pebble.IsCorruptionError(err) || errors.Is(err, fs.ErrNotExist) ||
		strings.Contains(err.Error(), "size mismatch") || strings.Contains(err.Error(), "unknown to the objstorage provider")
}

// checkFormat reports whether the directory is new (empty) and refuses one
// of another format.
func (s *Store) checkFormat() (fresh bool, err error) {
	b, err := os.ReadFile(filepath.Join(s.dir, formatFileName))
	if err == nil {
		if string(b) != formatText {
			return false, fmt.Errorf("%w: %s says %q; this build reads %q", ErrFormat, filepath.Join(s.dir, formatFileName), firstLine(b), formatText[:len(formatText)-1])
		}
		return false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("store: read %s: %w", formatFileName, err)
	}
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return false, fmt.Errorf("store: read %s: %w", s.dir, err)
	}
	for _, e := range ents {
		switch e.Name() {
		case lockFileName, "lost+found":
		default:
			return false, fmt.Errorf("%w: %s is not empty (it has %s) and has no %s", ErrFormat, s.dir, e.Name(), formatFileName)
		}
	}
	return true, nil
}

func firstLine(b []byte) string {
	for i, c := range b {
		if c == '\n' {
			return string(b[:i])
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}

// initDir lays out a new store: the watermark first, the format file last,
// so a crash in between leaves a directory Open still calls empty or new.
func (s *Store) initDir() error {
	_ = os.Remove(filepath.Join(s.dir, syncedFileName)) // a leftover of an interrupted init
	if err := createSyncedFile(s.dir); err != nil {
		return err
	}
	tmp := filepath.Join(s.dir, formatFileName+".tmp")
	if err := writeFileSync(tmp, []byte(formatText)); err != nil {
		return fmt.Errorf("store: write %s: %w", formatFileName, err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, formatFileName)); err != nil {
		return fmt.Errorf("store: write %s: %w", formatFileName, err)
	}
	return syncDir(s.dir)
}

func writeFileSync(name string, b []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// pebbleOptions are the engine's settings; see doc.go for why.
func (s *Store) pebbleOptions(mustExist bool) *pebble.Options {
	o := &pebble.Options{
		Cache:                       s.cache,
		MemTableSize:                uint64(s.opts.MemTableBytes),
		MemTableStopWritesThreshold: 2,
		MaxOpenFiles:                1000,
		FormatMajorVersion:          pebble.FormatNewest,
		ErrorIfNotExists:            mustExist,
		Logger:                      pebbleLogger{s},
		FS:                          vfs.OnDiskFull(vfs.Default, s.onDiskFull),
		EventListener: &pebble.EventListener{
			BackgroundError: func(err error) {
				s.log.Warn("storage engine background error", "err", err)
			},
			DiskSlow: func(info pebble.DiskSlowInfo) {
				s.log.Warn("slow disk operation", "path", info.Path, "op", info.OpType.String(), "duration", info.Duration)
			},
			WriteStallBegin: func(info pebble.WriteStallBeginInfo) {
				s.log.Warn("storage engine write stall", "reason", info.Reason)
			},
		},
	}
	// 16 KiB blocks (Pebble's default is 4 KiB): a history page of 50
	// messages (about 8 KiB) then costs one block read, not two or three,
	// when it comes from the disk.
	o.Levels[0].BlockSize = 16 << 10
	o.DisableAutomaticCompactions = s.opts.noAutoCompactions
	o.EnsureDefaults()
	return o
}

// pebbleLogger routes Pebble's logs to slog. Pebble calls Fatalf when it
// cannot go on safely (a failed commit, a failed MANIFEST write, a
// consistency check); its default exits the process. This one records the
// failure instead: the store then refuses writes and reports what it has
// not made durable as failed, and reads go on.
type pebbleLogger struct{ s *Store }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.s.log.Debug(fmt.Sprintf(format, args...), "source", "pebble")
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.s.log.Warn(fmt.Sprintf(format, args...), "source", "pebble")
}

func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.s.log.Error("storage engine failure: writes refused until restart", "source", "pebble", "err", msg)
	l.s.setFailure(fmt.Errorf("pebble: %s", msg))
}

// setFailure records the first failure; it is sticky.
func (s *Store) setFailure(err error) {
	e := fmt.Errorf("%w: %w", ErrFailed, err)
	s.fatal.CompareAndSwap(nil, &e)
}

func (s *Store) failure() error {
	if p := s.fatal.Load(); p != nil {
		return *p
	}
	return nil
}

// onDiskFull runs when Pebble meets ENOSPC despite the reserve (another
// process filled the disk between two checks, or the reserve is too
// small): it gives the ballast's space back so Pebble's write is retried
// and succeeds, and marks the store full until space is back.
func (s *Store) onDiskFull() {
	freed := s.ballast.release()
	s.space.forceFull()
	s.log.Warn("disk full inside the storage engine; ballast released, writes refused until space is back", "ballast_freed", freed)
}

// Close stops the store's goroutines (after a last group commit, so every
// accepted write's done runs), then closes Pebble. Reads in progress
// finish first; later calls fail with ErrClosed.
func (s *Store) Close() error {
	s.wmu.Lock()
	s.mu.Lock()
	closed := s.closed
	s.closed = true
	s.mu.Unlock()
	s.wmu.Unlock()
	if closed {
		return nil
	}
	s.cancel()
	close(s.quit)
	s.wg.Wait()
	close(s.notify)
	s.nwg.Wait()
	s.life.Lock()
	s.readClosed = true
	s.life.Unlock()
	return s.release()
}

// release closes whatever open() opened.
func (s *Store) release() error {
	var errs []error
	if s.db != nil {
		if err := s.db.Close(); err != nil {
			errs = append(errs, fmt.Errorf("store: close pebble: %w", err))
		}
		s.db = nil
	}
	if s.cache != nil {
		s.cache.Unref()
		s.cache = nil
	}
	if s.synced != nil {
		errs = append(errs, s.synced.Close())
		s.synced = nil
	}
	if s.lock != nil {
		errs = append(errs, s.lock.Close())
		s.lock = nil
	}
	return errors.Join(errs...)
}
