package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ringchat/ringchat/chatd/protocol"
)

// errTimeout is the cause of the command context when --timeout expires.
var errTimeout = errors.New("timeout")

// cliError is a failure with its exit code and its stable error code.
type cliError struct {
	exit      int
	code      string // server error code (exit 3) or one of chatctl's codes
	msg       string
	closeCode int // WebSocket close code, when a close caused it
	err       error
}

func (e *cliError) Error() string {
	if e.err != nil && e.msg == "" {
		return e.err.Error()
	}
	if e.err != nil {
		return e.msg + ": " + e.err.Error()
	}
	return e.msg
}

func (e *cliError) Unwrap() error { return e.err }

func usageError(msg string) *cliError {
	return &cliError{exit: exitUsage, code: "usage", msg: msg}
}

func serverError(e protocol.Error) *cliError {
	msg := "server refused the request: " + e.Code
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return &cliError{exit: exitServerError, code: e.Code, msg: msg}
}

func ioError(err error) *cliError {
	return &cliError{exit: exitFailure, code: "io", msg: "output", err: err}
}

// ended reports whether the command context has ended, counting a deadline
// that has passed although its timer has not cancelled the context yet. The
// client sets socket deadlines from the same instant (the hello's read, for
// one), and the read they end can return first: the failure it causes is the
// --timeout expiring, not a broken connection.
func ended(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

// timedOut reports whether the command context ended, or is ending, because
// --timeout expired. Only --timeout puts a deadline on the command context.
func timedOut(ctx context.Context) bool {
	if cause := context.Cause(ctx); cause != nil {
		return errors.Is(cause, errTimeout)
	}
	return ended(ctx)
}

// contextError turns the end of the command context into the right failure:
// the --timeout expiring, or an interrupt.
func contextError(ctx context.Context, what string) *cliError {
	if timedOut(ctx) {
		return &cliError{exit: exitTimeout, code: "timeout", msg: "timed out " + what}
	}
	return &cliError{exit: exitInterrupted, code: "interrupted", msg: "interrupted " + what}
}

// printer writes results to stdout, as text or JSON lines, and notices and
// errors to stderr (text) or stdout (JSON records). It remembers the first
// write error so that a command can stop when its reader went away.
type printer struct {
	w    io.Writer
	errw io.Writer
	json bool
	err  error
}

func newPrinter(w, errw io.Writer, asJSON bool) *printer {
	return &printer{w: w, errw: errw, json: asJSON}
}

func (p *printer) write(b []byte) {
	if p.err != nil {
		return
	}
	if _, err := p.w.Write(b); err != nil {
		p.err = err
	}
}

// frame prints a server frame verbatim (JSON mode only).
func (p *printer) frame(raw []byte) {
	b := make([]byte, 0, len(raw)+1)
	b = append(b, raw...)
	p.write(append(b, '\n'))
}

// record prints one of chatctl's own JSON records.
func (p *printer) record(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		p.err = fmt.Errorf("encode output: %w", err)
		return
	}
	p.write(append(b, '\n'))
}

// text prints a line of human output.
func (p *printer) text(format string, args ...any) {
	p.write([]byte(fmt.Sprintf(format, args...) + "\n"))
}

// notice reports something the user should know but that is not a result:
// as rec on stdout in JSON mode, as text on stderr otherwise.
func (p *printer) notice(rec any, format string, args ...any) {
	if p.json {
		p.record(rec)
		return
	}
	fmt.Fprintf(p.errw, "chatctl: "+format+"\n", args...)
}

// message prints one room message.
func (p *printer) message(raw []byte, m *protocol.Message) {
	if p.json {
		p.frame(raw)
		return
	}
	ts := time.UnixMilli(m.TS).Format("15:04:05")
	switch {
	case m.Type == protocol.TypeDeleted:
		p.text("%s %s #%d %s deleted #%d", ts, m.Room, m.Seq, m.From, m.Target)
	case m.Deleted:
		p.text("%s %s #%d %s: (message deleted)", ts, m.Room, m.Seq, m.From)
	default:
		text := strings.ReplaceAll(m.Text, "\n", "\n    ")
		p.text("%s %s #%d %s: %s", ts, m.Room, m.Seq, m.From, text)
	}
}

// errorRecord is the chatctl.error JSON record.
type errorRecord struct {
	Type      string `json:"type"`
	Exit      int    `json:"exit"`
	Code      string `json:"code"`
	Message   string `json:"message"`
	CloseCode int    `json:"close_code,omitempty"`
}

// fail reports err and returns the exit code it maps to.
func (p *printer) fail(err error) int {
	var ce *cliError
	if !errors.As(err, &ce) {
		ce = &cliError{exit: exitFailure, code: "io", err: err}
	}
	if p.json {
		p.err = nil // still try to tell the script why
		p.record(errorRecord{Type: "chatctl.error", Exit: ce.exit, Code: ce.code, Message: ce.Error(), CloseCode: ce.closeCode})
	}
	fmt.Fprintf(p.errw, "chatctl: %s\n", ce.Error())
	return ce.exit
}
