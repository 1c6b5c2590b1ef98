package store

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// How often the write path asks the filesystem for its free space: at most
// every spaceCheckEvery, or after spaceCheckBytes written since the last
// look, whichever comes first. Between looks the store subtracts what it
// wrote from the last figure.
const (
	spaceCheckEvery = 10 * time.Millisecond
	spaceCheckBytes = 256 << 10
)

// spaceCheck decides whether a write still fits above the reserve. Its
// fields are guarded by Store.wmu, except the atomics.
type spaceCheck struct {
	dir     string
	reserve int64 // negative: no check
	free    int64 // at the last look
	written int64 // since the last look
	at      time.Time
	// engineFull is set when Pebble met ENOSPC: writes are refused until
	// the reserve and the ballast fit again.
	engineFull atomic.Bool
	// avail is free-written at the last admission, for Stats.
	avail atomic.Int64
}

func (c *spaceCheck) forceFull() { c.engineFull.Store(true) }

// admit returns ErrFull (wrapped with the room and the figures) if a write
// of n bytes would eat into the reserve. b is re-made when the engine had
// used it and space is back.
func (c *spaceCheck) admit(room string, n int, b *ballast, log *slog.Logger) error {
	if c.reserve < 0 || n == 0 {
		return nil
	}
	now := time.Now()
	if c.at.IsZero() || now.Sub(c.at) >= spaceCheckEvery || c.written+int64(n) >= spaceCheckBytes || c.free-c.written-int64(n) < c.reserve {
		free, err := statFree(c.dir)
		if err != nil {
			return fmt.Errorf("%w: room %q: cannot read the free space of %s: %w", ErrFull, room, c.dir, err)
		}
		c.free, c.written, c.at = free, 0, now
	}
	if c.engineFull.Load() {
		need := c.reserve + b.size
		if c.free < need {
			return fmt.Errorf("%w: room %q: %d bytes free in %s; the storage engine ran out of space, writes resume at %d free", ErrFull, room, c.free, c.dir, need)
		}
		if err := b.ensure(log, c.reserve); err != nil {
			return fmt.Errorf("%w: room %q: re-making the ballast: %w", ErrFull, room, err)
		}
		c.engineFull.Store(false)
		c.at = time.Time{} // look again: the ballast took space
		log.Info("disk space is back; writes accepted again", "free_bytes", c.free)
		return c.admit(room, n, b, log)
	}
	avail := c.free - c.written
	c.avail.Store(avail)
	if avail-int64(n) < c.reserve {
		return fmt.Errorf("%w: room %q: %d bytes free in %s, %d reserved", ErrFull, room, avail, c.dir, c.reserve)
	}
	c.written += int64(n)
	return nil
}

// ballast is a file holding space that is handed back to Pebble when it
// meets a full disk, so that its write (a WAL block, a MANIFEST record)
// succeeds instead of failing: Pebble treats those failures as fatal.
type ballast struct {
	path string
	size int64
	mu   sync.Mutex
}

// ensure creates the ballast if it is missing and there is space for it
// and the reserve.
func (b *ballast) ensure(log *slog.Logger, reserve int64) error {
	if b.size <= 0 {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if st, err := os.Stat(b.path); err == nil && st.Size() == b.size {
		return nil
	}
	free, err := freeBytes(filepath.Dir(b.path))
	if err != nil {
		return err
	}
	if free < b.size+reserve {
		log.Warn("no space for the ballast file", "free_bytes", free, "ballast_bytes", b.size)
		return fmt.Errorf("%d bytes free, ballast %d + reserve %d", free, b.size, reserve)
	}
	f, err := os.OpenFile(b.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	zero := make([]byte, 1<<20)
	for left := b.size; left > 0 && err == nil; {
		n := min(left, int64(len(zero)))
		_, err = f.Write(zero[:n])
		left -= n
	}
	if err == nil {
		err = f.Sync()
	}
	err = errors.Join(err, f.Close())
	if err != nil {
		_ = os.Remove(b.path)
	}
	return err
}

// release deletes the ballast and returns how many bytes it freed.
func (b *ballast) release() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	st, err := os.Stat(b.path)
	if err != nil {
		return 0
	}
	if os.Remove(b.path) != nil {
		return 0
	}
	return st.Size()
}

// statFree is freeBytes; the disk-full test replaces it to let a write past
// the check onto a full disk, as happens when another process fills the
// disk between two checks.
var statFree = freeBytes
