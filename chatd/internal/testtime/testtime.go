// Package testtime is the one knob for the wall-clock bounds of ringchat's
// tests. Tests wait for events, never for time; but every wait needs an
// upper bound after which the test fails instead of hanging, and some
// assertions compare durations with the server's configured timeouts. A
// bound of the first kind ("this should never take this long") is written as
// Bound(d) or Timeout, never as a bare constant, so that a slow or loaded
// machine can raise all of them at once:
//
//	RINGCHAT_TEST_TIMEOUT_SCALE=3 make test
//
// The factor multiplies bounds only. Windows derived from a server's
// configured timeouts (a close expected at about the hello timeout) take
// their margin from Bound too, never from a second constant.
package testtime

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

// ScaleEnv names the environment variable holding the factor: a positive
// number, 1 when unset.
const ScaleEnv = "RINGCHAT_TEST_TIMEOUT_SCALE"

// scale is read once; a value that is not a positive number stops the test
// binary with a message naming the variable rather than being ignored.
var scale = func() float64 {
	v, ok := os.LookupEnv(ScaleEnv)
	if !ok || v == "" {
		return 1
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f <= 0 || f > 1000 {
		panic(fmt.Sprintf("%s=%q: want a positive number up to 1000 (a factor for the tests' time bounds)", ScaleEnv, v))
	}
	return f
}()

// Scale returns the factor from RINGCHAT_TEST_TIMEOUT_SCALE (1 when unset).
func Scale() float64 { return scale }

// Bound returns d multiplied by the scale: a bound on how long something
// that normally takes far less than d may take on a loaded machine.
func Bound(d time.Duration) time.Duration { return time.Duration(float64(d) * scale) }

// Timeout is the default bound of one wait (a frame, a metric, a process
// starting): 10 s, scaled. Long enough for a loaded 2-core machine running
// -race, short enough that a hang fails within seconds.
var Timeout = Bound(10 * time.Second)

// Slack is how late an event that the code under test schedules at a
// configured time (a close at the hello timeout, a drop after two missed
// pongs, a timer's expiry) may come on a loaded machine: 2 s, scaled. Such
// an event is expected within [configured, configured + Slack].
var Slack = Bound(2 * time.Second)
