package rpc

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/ringchat/ringchat/chatd/owner"
	"github.com/ringchat/ringchat/chatd/roomlog"
	"github.com/ringchat/ringchat/chatd/store"
	"github.com/ringchat/ringchat/chatd/transport"
)

// Error codes: an owner's errors travel in error replies as these strings
// (EncodeErr) and are turned back into the same errors on the requesting
// node (DecodeErr), so that errors.Is works across the hop. A stale term
// travels as CodeStaleTerm followed by ":" and the promised term.
const (
	CodeNotOwner      = "not_owner"
	CodeMoving        = "moving"
	CodeClosed        = "closed"
	CodeGap           = "gap"
	CodeNoQuorum      = "no_quorum"
	CodeBehind        = "behind"
	CodeStaleTerm     = "stale_term"
	CodeNotMember     = "not_member"
	CodeConflict      = "conflict"
	CodeStorageFull   = "storage_full"
	CodeStorageFailed = "storage_failed"
	// CodeNotDeletable is followed by ":" and the owner's explanation.
	CodeNotDeletable = "not_deletable"
	// CodeAlreadyDeleted is a deletion of a message deleted before.
	CodeAlreadyDeleted = "already_deleted"
)

// EncodeErr returns the code err travels as. An error outside the owner's
// vocabulary travels as its text, which DecodeErr leaves as it is.
func EncodeErr(err error) string {
	var ste *owner.StaleTermError
	switch {
	case errors.As(err, &ste):
		return CodeStaleTerm + ":" + strconv.FormatUint(ste.Promised, 10)
	case errors.Is(err, owner.ErrNotMember):
		return CodeNotMember
	case errors.Is(err, roomlog.ErrConflict):
		return CodeConflict
	case errors.Is(err, store.ErrFull):
		return CodeStorageFull
	case errors.Is(err, owner.ErrStorage):
		return CodeStorageFailed
	case errors.Is(err, owner.ErrNoQuorum):
		return CodeNoQuorum
	case errors.Is(err, owner.ErrNotOwner):
		return CodeNotOwner
	case errors.Is(err, owner.ErrMoving):
		return CodeMoving
	case errors.Is(err, owner.ErrClosed):
		return CodeClosed
	case errors.Is(err, roomlog.ErrGap):
		return CodeGap
	case errors.Is(err, owner.ErrBehind):
		return CodeBehind
	case errors.Is(err, roomlog.ErrAlreadyDeleted):
		return CodeAlreadyDeleted
	case errors.Is(err, roomlog.ErrNotDeletable):
		return CodeNotDeletable + ":" + err.Error()
	default:
		return err.Error()
	}
}

// DecodeErr turns a transport error into the owner error its code names,
// wrapping the remote error where the caller may want its text; any other
// error is returned as it is.
func DecodeErr(err error) error {
	var re *transport.RemoteError
	if errors.As(err, &re) {
		switch re.Msg {
		case CodeNotOwner:
			return owner.ErrNotOwner
		case CodeMoving:
			return owner.ErrMoving
		case CodeClosed:
			return owner.ErrClosed
		case CodeBehind:
			return owner.ErrBehind
		case CodeNotMember:
			return fmt.Errorf("%w: %w", owner.ErrNotMember, err)
		case CodeGap:
			return fmt.Errorf("%w: %w", roomlog.ErrGap, err)
		case CodeConflict:
			return fmt.Errorf("%w: %w", roomlog.ErrConflict, err)
		case CodeNoQuorum:
			return fmt.Errorf("%w: %w", owner.ErrNoQuorum, err)
		case CodeStorageFull:
			return fmt.Errorf("%w: %w: %w", owner.ErrStorage, store.ErrFull, err)
		case CodeAlreadyDeleted:
			return roomlog.ErrAlreadyDeleted
		case CodeStorageFailed:
			return fmt.Errorf("%w: %w: %w", owner.ErrStorage, store.ErrFailed, err)
		}
		if rest, ok := strings.CutPrefix(re.Msg, CodeNotDeletable+":"); ok {
			return fmt.Errorf("%w%s", roomlog.ErrNotDeletable, strings.TrimPrefix(rest, roomlog.ErrNotDeletable.Error()))
		}
		if rest, ok := strings.CutPrefix(re.Msg, CodeStaleTerm+":"); ok {
			promised, _ := strconv.ParseUint(rest, 10, 64)
			return &owner.StaleTermError{Promised: promised}
		}
	}
	return err
}
