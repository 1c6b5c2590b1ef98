package app

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/ringchat/ringchat/chatd/auth"
	"github.com/ringchat/ringchat/chatd/filewatch"
)

// loadKeySet reads --jwt-jwks-file and keeps it current: the file is read
// again at most every interval while tokens arrive, and a new content
// replaces the key set once it parses. Each load logs the key ids in use
// (they are public) and the keys left out.
func loadKeySet(path string, interval time.Duration, log *slog.Logger) (*filewatch.File[*auth.KeySet], error) {
	parse := func(data []byte) (*auth.KeySet, error) {
		set, err := auth.ParseKeySet(data)
		if err != nil {
			return nil, err
		}
		for _, why := range set.Skipped() {
			log.Warn("JWT key set: key left out", "file", path, "key", why)
		}
		log.Info("JWT key set loaded", "file", path, "kids", set.KeyIDs())
		return set, nil
	}
	f, err := filewatch.New(path, parse, filewatch.Options{
		What: "JWT key set", MaxBytes: auth.MaxKeySetBytes, Interval: interval, Log: log,
	})
	if err != nil {
		return nil, fmt.Errorf("--jwt-jwks-file: %w", err)
	}
	return f, nil
}
