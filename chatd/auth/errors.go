package auth

// Codes carried by [Error.Code]. They are part of the wire protocol seen by
// clients and by log processing, so they never change once released; add new
// codes instead of renaming existing ones.
const (
	// CodeTokenMissing means no token was presented and anonymous access is off.
	CodeTokenMissing = "token_missing"
	// CodeTokenMalformed means the token is not a structurally valid JWT.
	CodeTokenMalformed = "token_malformed"
	// CodeTokenAlgNotAllowed means the token's "alg" header names an algorithm
	// this server has no key for, including "none".
	CodeTokenAlgNotAllowed = "token_alg_not_allowed"
	// CodeTokenExpired means the token's "exp" lies in the past, beyond the leeway.
	CodeTokenExpired = "token_expired"
	// CodeTokenNotYetValid means the token's "nbf" or "iat" lies in the future,
	// beyond the leeway.
	CodeTokenNotYetValid = "token_not_yet_valid"
	// CodeTokenBadSignature means the signature does not verify, or the server
	// has no key to verify tokens with at all.
	CodeTokenBadSignature = "token_bad_signature"
	// CodeTokenUnknownKey means the token's "kid" names no key of the
	// server's key set, or the token names no kid while the server has
	// several keys to choose from.
	CodeTokenUnknownKey = "token_unknown_key"
	// CodeTokenInvalidClaims means the signature is fine but the claims are not
	// acceptable (no expiry, no or bad subject, wrong issuer or audience, a
	// badly typed rooms claim, ...).
	CodeTokenInvalidClaims = "token_invalid_claims"
	// CodeAnonymousDisabled means a name was presented without a token, but the
	// server does not allow anonymous access.
	CodeAnonymousDisabled = "anonymous_disabled"
	// CodeInvalidName means anonymous access is on but the name is empty or not
	// acceptable.
	CodeInvalidName = "invalid_name"
)

// MaxReasonLen is the longest Reason an [Error] may carry. A WebSocket close
// frame has 125 bytes of payload, two of which hold the status code.
const MaxReasonLen = 123

// Reasons are fixed strings rather than formatted from the underlying error
// so that nothing about keys, claims or library internals reaches an
// unauthenticated client, and so that MaxReasonLen is easy to guarantee.
const (
	reasonTokenMissing       = "token required"
	reasonTokenTooLarge      = "token too large"
	reasonTokenMalformed     = "token malformed"
	reasonAlgNotAllowed      = "token algorithm not allowed"
	reasonExpired            = "token expired"
	reasonNotYetValid        = "token not valid yet"
	reasonSignatureInvalid   = "token signature invalid"
	reasonNoKeyConfigured    = "token authentication not configured: no key"
	reasonUnknownKey         = "token key unknown"
	reasonKIDRequired        = "token key id (kid) required"
	reasonNoExpiry           = "token has no expiry"
	reasonNoSubject          = "token has no subject"
	reasonBadSubject         = "token subject invalid"
	reasonIssuerRejected     = "token issuer not accepted"
	reasonAudienceRejected   = "token audience not accepted"
	reasonRoomsInvalid       = "token rooms claim invalid"
	reasonClaimsInvalid      = "token claims invalid"
	reasonAnonymousDisabled  = "anonymous access disabled"
	reasonNameRequired       = "name required"
	reasonNameInvalid        = "name invalid: use 1-32 letters, digits, '_', '-' or '.'"
	reasonTokenRejectedOther = "token rejected"
)

// Error is an authentication failure.
//
// Code is one of the Code* constants and is meant for programs. Reason is a
// short, fixed, human-readable explanation of at most [MaxReasonLen] bytes
// that is safe to send to the client, for example in a WebSocket close
// frame. Err, when not nil, is the underlying cause; it may contain details
// (library messages, offending values) that belong in server logs only.
type Error struct {
	Code   string
	Reason string
	Err    error
}

// Error formats the failure for logs. Unlike Reason, its text includes the
// underlying cause and must not be sent to clients.
func (e *Error) Error() string {
	msg := "auth: " + e.Code + ": " + e.Reason
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the underlying cause so that errors.Is and errors.As can
// see through an Error.
func (e *Error) Unwrap() error {
	return e.Err
}

// fail builds an *Error; it exists so call sites stay one line.
func fail(code, reason string, cause error) *Error {
	return &Error{Code: code, Reason: reason, Err: cause}
}
