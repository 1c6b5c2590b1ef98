// Package store is a chatd node's durable store of room logs: every room
// the node owns or replicates, its metadata and its messages, in one
// Pebble database under --data-dir.
//
// # Why Pebble
//
// Pebble (CockroachDB's LSM engine, pure Go, builds with CGO_ENABLED=0) is
// used rather than bbolt because a chat node's writes are many small
// appends from many rooms at once. Pebble writes each batch to a
// write-ahead log and lets many batches share one fsync (group commit);
// bbolt commits one transaction per fsync, copy-on-writing B+tree pages,
// so its durable write rate is bounded by the disk's fsync rate. An LSM
// turns appends into sequential writes and keeps a room's messages, whose
// keys are adjacent, together in sorted tables; a retention cut is one
// range deletion per room whose space compactions reclaim, where bbolt
// would delete key by key and keep the freed pages in its file.
//
// # What it holds
//
// Per room, metadata (RoomMeta: epoch, the last writer's term, the highest
// promised term, head, oldest, and the first seq of each of the last
// MaxTermHistory terms) kept in memory for every room and persisted with
// every change; and messages (Entry: seq, term, sender, client id, text,
// timestamp), read from disk on demand. Values are compact binary records
// with a leading format byte. Message keys are the room's name prefixed by
// its length, then the seq big-endian, so a room's messages are one
// ordered range and no room's keys can run into another's (keys.go).
//
// # Durability: applied now, durable at done
//
// A write is applied at once under the store's lock (Pebble commit
// without sync: the next read sees it) and its done callback runs later,
// from the store's notifier goroutine, in write order, once it is
// durable. One syncer goroutine makes writes durable in groups: it syncs
// the WAL once for every write waiting (a LogData record committed with
// Sync; the WAL is one sequential file, and rotating it syncs and closes
// the previous one first, so that sync covers every earlier record), then
// records the group's last write number in the SYNCED file, and only then
// reports the group durable. The SYNCED write of one group overlaps the
// WAL sync of the next, so a cycle costs one fsync. Under load one fsync
// covers tens to hundreds of writes.
//
// # Guards against losing what was reported durable
//
// Pebble recovers quietly from a WAL that ends early (it takes a torn tail
// for a crash) and stops reading a MANIFEST at its first bad record. Both
// are right for a crash and wrong for damage: a WAL cut inside synced
// records, or a MANIFEST that lost a flush (whose tables Pebble then
// deletes as unreferenced), would come back as a shorter history with the
// same epoch. So every write batch also sets one key to its write number
// and to a digest of all rooms' metadata (the sum of a hash per room), and
// Open refuses with ErrCorrupt a store that recovered fewer writes than
// SYNCED says were reported durable, or whose metadata does not add up to
// the recovered digest, or whose rooms lack their first or last kept
// message (guard.go). Pebble's own Open refuses a table that is missing or
// of the wrong size, and block checksums make a read of a damaged block
// fail with ErrCorrupt. A read that returns fewer messages than the index
// says exist fails too, rather than answering short.
//
// # A full disk
//
// What Pebble v2.1.7 does when a write fails (read in its source): an
// error writing or syncing the WAL is sticky in the log writer, the next
// commit panics (commitWrite: "panic(err)"), and a failed synchronous
// commit is passed to Logger.Fatalf; a failed MANIFEST write is passed to
// Logger.Fatalf too ("treating such errors as fatal is preferred to
// attempting to unwind", version_set.go). The default Fatalf exits the
// process. Flush and compaction errors are not fatal: they are reported to
// EventListener.BackgroundError and retried. So a full disk must never
// reach Pebble's WAL or MANIFEST. The store therefore:
//
//   - refuses Append with ErrFull (wrapped with the room and the free
//     bytes) once the filesystem's free space would fall below
//     ReserveBytes; it asks statfs at most every 10 ms or 256 KiB written.
//     Metadata writes and deletions still pass: they are tiny, fencing
//     needs them, and deleting is how space comes back. The reserve also
//     leaves room for the flushes and compactions already under way.
//   - keeps a ballast file of ReserveBytes/4. Pebble's filesystem is
//     wrapped with vfs.OnDiskFull: if Pebble meets ENOSPC anyway (another
//     process filled the disk between two looks), the ballast is deleted,
//     Pebble's write is retried and succeeds, and the store refuses
//     appends until the reserve and a new ballast fit again; then it
//     accepts them without a restart.
//   - gives Pebble a Logger whose Fatalf records the failure instead of
//     exiting, and recovers a panic of a commit: the store then refuses
//     writes with ErrFailed until it is reopened (reads go on), and every
//     write not yet reported durable gets done(err).
//
// Reads work throughout. Nothing reported durable is lost: done(nil) only
// follows a successful WAL sync and SYNCED write.
//
// Measured here on a 32 MiB tmpfs with the reserve check switched off:
// once the ballast is used up too, Pebble neither crashes nor fails the
// write. Its flushes fail with ENOSPC and are retried, the memtables fill,
// and the next commit stalls until a flush succeeds: an Append blocks
// (reads do not, see Concurrency). The reserve exists so that this never
// happens.
//
// # Retention
//
// A background pass (retention.go) moves each room's Oldest forward by
// count (MaxMessages) and age (MaxAge), deleting the range below it in the
// same batch, and compacts the deleted key range when it removed many
// messages. Reads below Oldest return what remains with Page.TooOld set,
// so the caller answers "too old". Timestamps are only nearly ascending
// (ownership moves between nodes with slightly different clocks): the age
// cut stops at the first message younger than MaxAge, so nothing is
// removed early and an old message behind a younger one waits at most the
// clock skew.
//
// # Memory
//
// Memory does not grow with the messages stored: the metadata index holds
// every room (about 200 bytes each plus the term starts), Pebble's block
// cache is bounded by CacheBytes (default 32 MiB) and its memtables by
// 2 × MemTableBytes (default 16 MiB each; a 16 MiB memtable flushes every
// ~100,000 messages, large enough that group commits rarely wait on a
// memtable switch, small enough to keep the idle footprint and the WAL to
// replay at Open small). Tables use 16 KiB blocks (Pebble's default is
// 4 KiB), so a history page of 50 messages read from disk is one block
// read.
//
// # Concurrency
//
// All methods are safe for concurrent use. Callers serialise the writes of
// one room (the owner's per-room lock); the store orders all writes under
// one write mutex, for the few microseconds a non-syncing Pebble commit
// takes, and updates the index under a separate read-write lock
// afterwards. Reads take only that read lock, to snapshot the room's
// bounds and open an iterator, then read without it: a commit that stalls
// never holds up a read. Retention runs concurrently with writes
// and reads of the same room: a room reset, truncated or deleted while a
// pass looked at it is left for the next pass.
package store
