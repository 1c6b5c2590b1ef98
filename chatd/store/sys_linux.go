package store

import (
	"os"

	"golang.org/x/sys/unix"
)

// fdatasync makes f's data durable without forcing its metadata (the
// watermark slots are overwritten in place, so the size never changes).
func fdatasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }

// freeBytes is the space an unprivileged writer may still use on the
// filesystem holding dir.
func freeBytes(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// lockDir takes an exclusive advisory lock on name, failing at once when
// another open file (in this or another process) holds it.
func lockDir(name string) (*os.File, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		_ = f.Close()
		if err == unix.EWOULDBLOCK {
			return nil, errLockHeld
		}
		return nil, err
	}
	return f, nil
}
