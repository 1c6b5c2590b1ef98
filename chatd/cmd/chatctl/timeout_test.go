package main

import (
	"context"
	"testing"
	"time"
)

// passedDeadline is a context whose deadline has passed but whose timer has
// not cancelled it yet: the moment at which a socket deadline set from the
// same instant may already have ended a read.
type passedDeadline struct{ context.Context }

func (passedDeadline) Deadline() (time.Time, bool) { return time.Now().Add(-time.Millisecond), true }

// TestDeadlinePassedIsTheTimeout: a failure seen in that moment is the
// --timeout expiring (exit 5), not a broken connection or an interrupt;
// one seen before the deadline is not.
func TestDeadlinePassedIsTheTimeout(t *testing.T) {
	ctx := passedDeadline{context.Background()}
	if ctx.Err() != nil || !ended(ctx) || !timedOut(ctx) {
		t.Fatalf("a passed deadline: ended %v, timedOut %v", ended(ctx), timedOut(ctx))
	}
	f := &connFailure{err: context.DeadlineExceeded}
	if e := f.cli(ctx, "while tailing"); e.exit != exitTimeout || e.code != "timeout" {
		t.Fatalf("failure at a passed deadline = exit %d %q, want %d timeout", e.exit, e.code, exitTimeout)
	}
	tl := &tailer{ctx: ctx, o: &options{count: 1}, e: &env{out: newPrinter(nil, nil, false)}}
	if err := tl.stopped(); err == nil || err.(*cliError).exit != exitTimeout {
		t.Fatalf("tail stopped at a passed deadline with %v, want exit %d", err, exitTimeout)
	}

	live, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if ended(live) || timedOut(live) {
		t.Fatal("a context an hour from its deadline counts as ended")
	}
	interrupted, stop := context.WithCancel(context.Background())
	stop()
	if !ended(interrupted) || timedOut(interrupted) || contextError(interrupted, "x").exit != exitInterrupted {
		t.Fatal("an interrupt counts as the --timeout")
	}
}
