// Package filewatch keeps a value parsed from a file current while chatd
// runs: a file that a Kubernetes Secret volume (or a person) replaces is
// read again, at most once per interval and only when it is asked for, and
// its new content replaces the value once it parses. A file caught half
// written, or a bad edit, never takes away the value in use: the problem is
// logged once and the previous value stays. chatd reads the admin tokens
// and the JWT key set this way.
//
// The file's content is compared, not its size and modification time: the
// files are small, and a rewrite within the same timestamp granularity
// must not go unnoticed.
package filewatch

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Parse turns a file's content into the value held. It must not keep data.
type Parse[T any] func(data []byte) (T, error)

// Options configure a File.
type Options struct {
	// What names the value in log lines and errors ("admin tokens").
	What string
	// MaxBytes bounds the file's size: a larger file is an error, so that
	// a wrong path (a log file, a device) is refused instead of slurped.
	MaxBytes int64
	// Interval is how often, at most, the file is read again. 0 reads it
	// at every Get (tests).
	Interval time.Duration
	// Log receives "reloaded" (info) and "keeping" (error) lines. They name
	// the file, never its content.
	Log *slog.Logger
}

// File holds the value parsed from one file.
type File[T any] struct {
	path  string
	parse Parse[T]
	opts  Options

	cur       atomic.Pointer[T]
	checkedAt atomic.Int64 // unix nanoseconds of the last read

	// mu serialises reads of the file; raw and lastErr are under it.
	mu      sync.Mutex
	raw     []byte
	lastErr string
}

// New reads and parses the file once. An unreadable file or content that
// does not parse is an error: chatd must not start with a value it cannot
// use.
func New[T any](path string, parse Parse[T], opts Options) (*File[T], error) {
	f := &File[T]{path: path, parse: parse, opts: opts}
	raw, err := f.read()
	if err != nil {
		return nil, err
	}
	v, err := parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s in %s: %w", opts.What, path, err)
	}
	f.raw = raw
	f.cur.Store(&v)
	f.checkedAt.Store(time.Now().UnixNano())
	return f, nil
}

// Get returns the current value, after reading the file again when
// Interval has passed since it last was. A Get that finds another one
// reading the file does not wait: it returns the value in use.
func (f *File[T]) Get() T {
	if time.Now().UnixNano()-f.checkedAt.Load() >= int64(f.opts.Interval) && f.mu.TryLock() {
		f.checkedAt.Store(time.Now().UnixNano())
		f.reloadLocked()
		f.mu.Unlock()
	}
	return *f.cur.Load()
}

// Path is the file's path.
func (f *File[T]) Path() string { return f.path }

// reloadLocked reads the file and takes its value when the content changed
// and parses; otherwise the value in use stays and the error is logged,
// once per distinct error.
func (f *File[T]) reloadLocked() {
	raw, err := f.read()
	if err == nil && bytes.Equal(raw, f.raw) {
		return
	}
	var v T
	if err == nil {
		if v, err = f.parse(raw); err != nil {
			err = fmt.Errorf("%s in %s: %w", f.opts.What, f.path, err)
		}
	}
	if err != nil {
		if msg := err.Error(); msg != f.lastErr {
			f.lastErr = msg
			f.log().Error("keeping the current "+f.opts.What, "file", f.path, "err", err)
		}
		return
	}
	f.raw, f.lastErr = raw, ""
	f.cur.Store(&v)
	f.log().Info(f.opts.What+" reloaded", "file", f.path)
}

func (f *File[T]) log() *slog.Logger {
	if f.opts.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return f.opts.Log
}

// ErrTooLarge is returned for a file above Options.MaxBytes.
var ErrTooLarge = errors.New("file too large")

// read returns the file's content, refusing one above MaxBytes.
func (f *File[T]) read() ([]byte, error) {
	fh, err := os.Open(f.path)
	if err != nil {
		return nil, fmt.Errorf("read the %s: %w", f.opts.What, err)
	}
	defer fh.Close()
	r := io.Reader(fh)
	if f.opts.MaxBytes > 0 {
		r = io.LimitReader(fh, f.opts.MaxBytes+1)
	}
	raw, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read the %s from %s: %w", f.opts.What, f.path, err)
	}
	if f.opts.MaxBytes > 0 && int64(len(raw)) > f.opts.MaxBytes {
		return nil, fmt.Errorf("read the %s from %s: %w (more than %d bytes)", f.opts.What, f.path, ErrTooLarge, f.opts.MaxBytes)
	}
	return raw, nil
}
