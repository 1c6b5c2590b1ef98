package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"io/fs"
	"os"
	"path/filepath"
)

// The guards against silently losing data that was reported durable.
//
// Every write batch sets one key, keyWriteMark, to the batch's write
// number (1, 2, 3, … in commit order) and to a digest of every room's
// metadata after the batch. After each WAL sync, the syncer records the
// highest write number the sync covered in SYNCED, a small file outside
// Pebble, before any done callback of those writes runs. Open then
// requires:
//
//   - the recovered write number ≥ the one in SYNCED: Pebble stops WAL
//     replay quietly at a torn tail, so a WAL cut short inside synced
//     records would otherwise come back as a shorter history;
//   - the digest of the metadata it loaded = the recovered digest: Pebble
//     also stops reading a MANIFEST quietly at its first bad record, which
//     forgets later flushes (their tables are then deleted as obsolete), so
//     some rooms would come back with older metadata;
//   - every room's first and last kept message present.
//
// Pebble's own Open checks that every table the MANIFEST lists exists with
// the recorded size (a truncated table is refused there).
//
// Block checksums catch flipped bytes in tables when they are read.

const (
	syncedFileName = "SYNCED"
	formatFileName = "STORE-FORMAT"
	lockFileName   = "STORE-LOCK"
	ballastName    = "STORE-BALLAST"
	// formatVersion is the store's on-disk format. A directory of another
	// version is refused by Open.
	formatVersion = 1
	formatText    = "ringchat chatd store, format 1\n"

	// SYNCED holds two slots, in different sectors, written alternately, so
	// a torn write of one leaves the other intact.
	syncedSlotSize = 32
	syncedSlotB    = 512
	syncedMagic    = 0x52435357 // "RCSW"
)

// syncedFile is the durable "synced through" watermark.
type syncedFile struct {
	f    *os.File
	gen  uint64 // generation of the newest slot
	last uint64 // write number it records
	buf  [syncedSlotSize]byte
}

func createSyncedFile(dir string) error {
	f, err := os.OpenFile(filepath.Join(dir, syncedFileName), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return fmt.Errorf("store: create %s: %w", syncedFileName, err)
	}
	sf := &syncedFile{f: f}
	err = sf.advance(0)
	return errors.Join(err, f.Close())
}

func openSyncedFile(dir string) (*syncedFile, error) {
	name := filepath.Join(dir, syncedFileName)
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s is missing from %s, so what was reported durable cannot be checked", ErrCorrupt, syncedFileName, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", name, err)
	}
	sf := &syncedFile{f: f}
	found := false
	for _, off := range []int64{0, syncedSlotB} {
		var b [syncedSlotSize]byte
		if n, _ := f.ReadAt(b[:], off); n != syncedSlotSize {
			continue
		}
		gen, num, ok := parseSyncedSlot(b[:])
		if ok && (!found || gen > sf.gen) {
			sf.gen, sf.last, found = gen, num, true
		}
	}
	if !found {
		_ = f.Close()
		return nil, fmt.Errorf("%w: %s has no valid slot", ErrCorrupt, name)
	}
	return sf, nil
}

func parseSyncedSlot(b []byte) (gen, num uint64, ok bool) {
	if binary.LittleEndian.Uint32(b[0:]) != syncedMagic {
		return 0, 0, false
	}
	if crc32.ChecksumIEEE(b[:24]) != binary.LittleEndian.Uint32(b[24:]) {
		return 0, 0, false
	}
	return binary.LittleEndian.Uint64(b[8:]), binary.LittleEndian.Uint64(b[16:]), true
}

// advance records num as synced: it writes the slot the newest one is not
// in and syncs the file.
func (sf *syncedFile) advance(num uint64) error {
	gen := sf.gen + 1
	b := sf.buf[:]
	clear(b)
	binary.LittleEndian.PutUint32(b[0:], syncedMagic)
	b[4] = markFormatV1
	binary.LittleEndian.PutUint64(b[8:], gen)
	binary.LittleEndian.PutUint64(b[16:], num)
	binary.LittleEndian.PutUint32(b[24:], crc32.ChecksumIEEE(b[:24]))
	off := int64(0)
	if gen%2 == 0 {
		off = syncedSlotB
	}
	if _, err := sf.f.WriteAt(b, off); err != nil {
		return fmt.Errorf("store: write %s: %w", syncedFileName, err)
	}
	if err := fdatasync(sf.f); err != nil {
		return fmt.Errorf("store: sync %s: %w", syncedFileName, err)
	}
	sf.gen, sf.last = gen, num
	return nil
}

func (sf *syncedFile) Close() error { return sf.f.Close() }

// encodeWriteMark encodes the value of keyWriteMark.
func encodeWriteMark(dst []byte, num, digest uint64) []byte {
	dst = append(dst, markFormatV1)
	dst = binary.AppendUvarint(dst, num)
	return binary.LittleEndian.AppendUint64(dst, digest)
}

func decodeWriteMark(v []byte) (num, digest uint64, err error) {
	if len(v) == 0 || v[0] != markFormatV1 {
		return 0, 0, fmt.Errorf("%w: write mark has format %v", ErrCorrupt, firstByte(v))
	}
	num, n := binary.Uvarint(v[1:])
	if n <= 0 || len(v) != 1+n+8 {
		return 0, 0, fmt.Errorf("%w: write mark of %d bytes", ErrCorrupt, len(v))
	}
	return num, binary.LittleEndian.Uint64(v[1+n:]), nil
}

// metaHash is one room's share of the metadata digest. The digest is the
// sum (mod 2^64) of every room's share, so one room's change updates it in
// constant time and the order of rooms does not matter.
func metaHash(room string, enc []byte) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(room))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write(enc)
	return h.Sum64()
}
