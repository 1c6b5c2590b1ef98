package auth

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// DefaultRoomsClaim is the claim read for room patterns when
// [Config.RoomsClaim] is empty.
const DefaultRoomsClaim = "rooms"

// maxTokenLen bounds the token accepted by Authenticate. Tokens arrive
// before the client is authenticated, so without a bound anyone could make
// the server base64- and JSON-decode arbitrarily large input. 16 KiB leaves
// generous room for long rooms claims.
const maxTokenLen = 16 << 10

// registeredClaims are the JWT claims with a meaning fixed by RFC 7519;
// reading room patterns from one of them is certainly a configuration error.
var registeredClaims = []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti"}

// Config configures an [Authenticator]. Token authentication is enabled by
// providing HMACSecret, PublicKeyPEM, or both; with neither, only anonymous
// access can succeed.
type Config struct {
	// HMACSecret enables HS256 tokens signed with this shared secret. It
	// must be at least MinHMACSecretLen bytes.
	HMACSecret []byte

	// PublicKeyPEM enables RS256 (for an RSA key of at least 2048 bits) or
	// ES256 (for an ECDSA P-256 key). The algorithm follows from the key.
	// Accepted PEM blocks are "PUBLIC KEY" (PKIX), "RSA PUBLIC KEY" (PKCS #1)
	// and "CERTIFICATE"; the first such block is used. See ReadPublicKeyFile.
	PublicKeyPEM []byte

	// KeySet, when set, returns the keys with a key id ("kid") that tokens
	// may name, as of now: it is asked at every token, so that a key set
	// read from a file can change while the server runs (see ParseKeySet).
	// A token naming a kid is verified with that key only. A token without
	// a kid is verified with HMACSecret or PublicKeyPEM (whichever is for
	// its algorithm), or, when neither is configured, with the set's key if
	// the set has exactly one. It must not return nil.
	KeySet func() *KeySet

	// Issuer, when set, must equal the token's "iss" claim.
	Issuer string

	// Audience, when set, must be one of the token's "aud" values.
	Audience string

	// AllowAnonymous lets clients without a token connect under a name of
	// their choosing. It is meant for development and closed deployments:
	// names are not reserved and share the UserID namespace with token
	// subjects, so an anonymous client can pose as any token user whose
	// subject is also a valid name. Do not enable it where token users exist.
	AllowAnonymous bool

	// Leeway is the clock skew tolerated when checking "exp", "nbf" and
	// "iat". It must not be negative.
	Leeway time.Duration

	// RoomsClaim names the claim holding the room patterns the user may
	// join, as a JSON array of strings (see Identity.CanJoin). Empty means
	// DefaultRoomsClaim. A token without the claim may join any room.
	RoomsClaim string

	// Now returns the current time; nil means time.Now. Tests set it to get
	// deterministic expiry checks.
	Now func() time.Time
}

// Authenticator turns the credentials a client presents into an
// [Identity]. It is immutable after New and safe for concurrent use.
type Authenticator struct {
	// legacy holds the keys without a kid (the HMAC secret and the public
	// key of the PEM file), at most one per algorithm.
	legacy         []verifyKey
	keySet         func() *KeySet // nil without a key set
	parserOpts     []jwt.ParserOption
	issuer         string
	audience       string
	allowAnonymous bool
	roomsClaim     string
}

// New validates cfg and returns an Authenticator for it.
//
// A configuration without any key is accepted, so that a development
// server can run anonymous-only; every token is then rejected with
// [CodeTokenBadSignature]. New fails when the HMAC secret is too short, the
// public key cannot be used, the leeway is negative or the rooms claim is a
// registered JWT claim.
func New(cfg Config) (*Authenticator, error) {
	a := &Authenticator{
		issuer:         cfg.Issuer,
		audience:       cfg.Audience,
		allowAnonymous: cfg.AllowAnonymous,
		roomsClaim:     cfg.RoomsClaim,
	}

	if len(cfg.HMACSecret) > 0 {
		if len(cfg.HMACSecret) < MinHMACSecretLen {
			return nil, fmt.Errorf("auth: HMAC secret is %d bytes; HS256 needs at least %d (RFC 7518 section 3.2) to resist brute force",
				len(cfg.HMACSecret), MinHMACSecretLen)
		}
		// Copy so that a caller reusing or zeroing its buffer cannot change
		// what we verify with.
		a.legacy = append(a.legacy, verifyKey{alg: jwt.SigningMethodHS256.Alg(), key: slices.Clone(cfg.HMACSecret)})
	}

	if len(cfg.PublicKeyPEM) > 0 {
		k, err := parsePublicKeyPEM(cfg.PublicKeyPEM)
		if err != nil {
			return nil, fmt.Errorf("auth: public key: %w", err)
		}
		a.legacy = append(a.legacy, k)
	}
	a.keySet = cfg.KeySet

	if cfg.Leeway < 0 {
		return nil, fmt.Errorf("auth: leeway %v is negative", cfg.Leeway)
	}

	if a.roomsClaim == "" {
		a.roomsClaim = DefaultRoomsClaim
	}
	if slices.Contains(registeredClaims, a.roomsClaim) {
		return nil, fmt.Errorf("auth: rooms claim %q is a registered JWT claim", a.roomsClaim)
	}

	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	a.parserOpts = []jwt.ParserOption{
		// A token without expiry would be valid forever if it leaked.
		jwt.WithExpirationRequired(),
		// An "iat" in the future means the issuer's clock or the token is
		// wrong; either way it should not be trusted yet.
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(now),
		// Non-canonical base64 would let the same token have several
		// spellings, which defeats logging and any future revocation list.
		jwt.WithStrictDecoding(),
	}
	if cfg.Issuer != "" {
		a.parserOpts = append(a.parserOpts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		a.parserOpts = append(a.parserOpts, jwt.WithAudience(cfg.Audience))
	}
	return a, nil
}

// Modes lists the enabled ways to authenticate, in a fixed order, for
// startup logging: any of "hs256", "rs256", "es256" (keys without a kid),
// "jwks" (a key set) and "anonymous". An empty result means every attempt
// will fail.
func (a *Authenticator) Modes() []string {
	modes := make([]string, 0, len(a.legacy)+2)
	for _, k := range a.legacy {
		modes = append(modes, strings.ToLower(k.alg))
	}
	if a.keySet != nil {
		modes = append(modes, "jwks")
	}
	if a.allowAnonymous {
		modes = append(modes, "anonymous")
	}
	return modes
}

// keys is the key material one token is checked against: the keys without
// a kid and the key set as it is now.
type keys struct {
	legacy []verifyKey
	set    *KeySet
}

// methods lists the algorithms some key is for.
func (k keys) methods() []string {
	var out []string
	add := func(alg string) {
		if !slices.Contains(out, alg) {
			out = append(out, alg)
		}
	}
	for _, v := range k.legacy {
		add(v.alg)
	}
	if k.set != nil {
		for _, v := range k.set.byKID {
			add(v.alg)
		}
	}
	return out
}

// Errors keyFunc returns; classify maps them to codes.
var (
	errUnknownKey  = errors.New("no key with the token's kid")
	errKIDRequired = errors.New("the token names no kid and the server has several keys")
	errKIDNotText  = errors.New(`the token's "kid" is not a string`)
	errAlgMismatch = errors.New("the token's algorithm is not the one its key is for")
)

// keyFor picks the key a token must verify with: the key its kid names
// when a key set is configured (and only that one); else the key without
// a kid for its algorithm; else the key set's only key. The key must be for the token's algorithm: binding each key to
// one algorithm is what defeats algorithm confusion (HS256 keyed with an
// RSA public key).
func (k keys) keyFor(tok *jwt.Token) (verifyKey, error) {
	alg := tok.Method.Alg()
	rawKID, hasKID := tok.Header["kid"]
	var v verifyKey
	switch {
	case hasKID && k.set.Len() > 0:
		kid, ok := rawKID.(string)
		if !ok {
			return verifyKey{}, errKIDNotText
		}
		found, ok := k.set.byKID[kid]
		if !ok {
			return verifyKey{}, errUnknownKey
		}
		v = found
	default:
		// No key set: a kid, if any, names nothing chatd knows and is
		// ignored, as before key sets existed.
		if i := slices.IndexFunc(k.legacy, func(l verifyKey) bool { return l.alg == alg }); i >= 0 {
			v = k.legacy[i]
			break
		}
		only, ok := k.set.only()
		switch {
		case ok:
			v = only
		case k.set.Len() > 1:
			return verifyKey{}, errKIDRequired
		default:
			return verifyKey{}, errAlgMismatch
		}
	}
	if v.alg != alg {
		return verifyKey{}, errAlgMismatch
	}
	return v, nil
}

// Authenticate establishes who a client is.
//
// A non-empty token is verified as a JWT and name is ignored, so that a bad
// or expired token fails loudly instead of silently falling back to an
// anonymous identity.
// The token is the bare compact JWT, without a "Bearer " prefix. The token
// must carry "exp" and "sub"; "nbf" and "iat" are checked when present.
//
// With an empty token, name is taken as an anonymous name if anonymous access
// is allowed. When both are empty the error is [CodeTokenMissing] if
// anonymous access is disabled (a token is what the client needs) and
// [CodeInvalidName] otherwise (a name would do).
//
// Every error returned is an [*Error].
func (a *Authenticator) Authenticate(token, name string) (Identity, error) {
	if token != "" {
		id, err := a.authenticateToken(token)
		if err != nil {
			return Identity{}, err
		}
		return id, nil
	}
	id, err := a.authenticateAnonymous(name)
	if err != nil {
		return Identity{}, err
	}
	return id, nil
}

// authenticateAnonymous implements the token-less path of Authenticate.
// It returns *Error rather than error so that Authenticate never wraps a nil
// *Error into a non-nil error interface.
func (a *Authenticator) authenticateAnonymous(name string) (Identity, *Error) {
	if !a.allowAnonymous {
		if name == "" {
			return Identity{}, fail(CodeTokenMissing, reasonTokenMissing, nil)
		}
		return Identity{}, fail(CodeAnonymousDisabled, reasonAnonymousDisabled, nil)
	}
	if name == "" {
		return Identity{}, fail(CodeInvalidName, reasonNameRequired, nil)
	}
	if err := validateName(name); err != nil {
		return Identity{}, fail(CodeInvalidName, reasonNameInvalid, err)
	}
	return Identity{UserID: name, Anonymous: true}, nil
}

// errNoKey is the cause reported when tokens arrive at a server configured
// without any verification key.
var errNoKey = errors.New("no HMAC secret or public key configured")

// authenticateToken implements the token path of Authenticate.
func (a *Authenticator) authenticateToken(token string) (Identity, *Error) {
	if len(token) > maxTokenLen {
		return Identity{}, fail(CodeTokenMalformed, reasonTokenTooLarge,
			fmt.Errorf("token is %d bytes, limit is %d", len(token), maxTokenLen))
	}
	k := keys{legacy: a.legacy}
	if a.keySet != nil {
		k.set = a.keySet()
	}
	methods := k.methods()
	// Beyond giving a clear reason, this guard matters for safety: with no
	// methods the parser would get WithValidMethods(nil), which jwt reads
	// as "no restriction".
	if len(methods) == 0 {
		return Identity{}, fail(CodeTokenBadSignature, reasonNoKeyConfigured, errNoKey)
	}

	claims := jwt.MapClaims{}
	// A fresh parser per call: jwt does not document Parser as safe for
	// concurrent use, and building one is only a handful of assignments.
	// Restricting the methods to the keys we hold is the first defence
	// against "alg":"none" and HS256-with-the-RSA-public-key attacks;
	// keyFor binding each key to its algorithm is the second.
	opts := append(slices.Clip(a.parserOpts), jwt.WithValidMethods(methods))
	tok, err := jwt.NewParser(opts...).ParseWithClaims(token, claims, func(tok *jwt.Token) (any, error) {
		v, err := k.keyFor(tok)
		return v.key, err
	})
	if err != nil {
		return Identity{}, classify(tok, claims, err, k, methods, a.issuer, a.audience)
	}
	return a.identityFromClaims(claims)
}

// classify maps an error from jwt's parser to an *Error.
//
// jwt reports several distinct situations through the same sentinel (a
// disallowed algorithm is an ErrTokenSignatureInvalid; a missing exp, a
// missing iss and a mistyped iss all end up as ErrTokenInvalidClaims), so
// the parsed header and claims, which jwt returns alongside the error, are
// consulted to tell them apart. The order of the checks matters: it puts the
// most actionable reason first, e.g. "expired" (fetch a new token) before a
// complaint about the audience.
func classify(tok *jwt.Token, claims jwt.MapClaims, err error, k keys, methods []string, issuer, audience string) *Error {
	if errors.Is(err, jwt.ErrTokenMalformed) || tok == nil {
		return fail(CodeTokenMalformed, reasonTokenMalformed, err)
	}
	alg, ok := tok.Header["alg"].(string)
	if !ok {
		return fail(CodeTokenMalformed, reasonTokenMalformed, err)
	}
	// A kid that names no key of the set says more than the algorithm:
	// after a rotation, a token of a removed key may well be of an
	// algorithm no remaining key is for. (The parser refuses an algorithm
	// outside methods before it asks for a key, so this is decided here.)
	if kid, named := tok.Header["kid"].(string); named && k.set.Len() > 0 {
		if _, known := k.set.byKID[kid]; !known {
			return fail(CodeTokenUnknownKey, reasonUnknownKey, errUnknownKey)
		}
	}
	if !slices.Contains(methods, alg) || errors.Is(err, errAlgMismatch) {
		return fail(CodeTokenAlgNotAllowed, reasonAlgNotAllowed, err)
	}

	switch {
	case errors.Is(err, errUnknownKey):
		return fail(CodeTokenUnknownKey, reasonUnknownKey, err)
	case errors.Is(err, errKIDRequired):
		return fail(CodeTokenUnknownKey, reasonKIDRequired, err)
	case errors.Is(err, errKIDNotText):
		return fail(CodeTokenMalformed, reasonTokenMalformed, err)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		// Unverifiable at this point can only come from keyFunc, i.e. we
		// could not check the signature; to the client that is the same
		// as a signature that does not check out.
		return fail(CodeTokenBadSignature, reasonSignatureInvalid, err)
	case errors.Is(err, jwt.ErrTokenExpired):
		return fail(CodeTokenExpired, reasonExpired, err)
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return fail(CodeTokenNotYetValid, reasonNotYetValid, err)
	case !errors.Is(err, jwt.ErrTokenInvalidClaims):
		// Not a claims problem either; jwt has grown a failure mode this
		// code does not know about. Refuse without guessing at a reason.
		return fail(CodeTokenMalformed, reasonTokenRejectedOther, err)
	case !hasExpiry(claims):
		return fail(CodeTokenInvalidClaims, reasonNoExpiry, err)
	case issuer != "" && !issuerAccepted(claims, issuer):
		return fail(CodeTokenInvalidClaims, reasonIssuerRejected, err)
	case audience != "" && !audienceAccepted(claims, audience):
		return fail(CodeTokenInvalidClaims, reasonAudienceRejected, err)
	default:
		return fail(CodeTokenInvalidClaims, reasonClaimsInvalid, err)
	}
}

// hasExpiry reports whether claims has an "exp": absent, null and 0 all
// mean none (docs/protocol.md §10.1). jwt agrees about absent and 0, but
// reads null as a claim of the wrong type, so null is checked here first.
// Any other mistyped exp (a string, say) counts as set: it is reported as
// invalid claims, not as missing.
func hasExpiry(claims jwt.MapClaims) bool {
	if raw, present := claims["exp"]; !present || raw == nil {
		return false
	}
	exp, err := claims.GetExpirationTime()
	return err != nil || exp != nil
}

// issuerAccepted reports whether claims carries the configured issuer.
func issuerAccepted(claims jwt.MapClaims, issuer string) bool {
	iss, err := claims.GetIssuer()
	return err == nil && iss == issuer
}

// audienceAccepted reports whether claims lists the configured audience.
func audienceAccepted(claims jwt.MapClaims, audience string) bool {
	aud, err := claims.GetAudience()
	return err == nil && slices.Contains(aud, audience)
}

// jsonKind names the JSON type of a decoded claim value, for log messages
// that talk about the token as its issuer wrote it rather than in Go types.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "boolean"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// identityFromClaims checks the claims jwt does not know about and builds
// the Identity. It runs only after signature and time checks passed.
func (a *Authenticator) identityFromClaims(claims jwt.MapClaims) (Identity, *Error) {
	rawSub, present := claims["sub"]
	if !present || rawSub == nil || rawSub == "" {
		return Identity{}, fail(CodeTokenInvalidClaims, reasonNoSubject, errors.New(`"sub" claim is missing`))
	}
	sub, ok := rawSub.(string)
	if !ok {
		return Identity{}, fail(CodeTokenInvalidClaims, reasonBadSubject, fmt.Errorf(`"sub" claim is a %s, not a string`, jsonKind(rawSub)))
	}
	if err := validateUserID(sub); err != nil {
		return Identity{}, fail(CodeTokenInvalidClaims, reasonBadSubject, err)
	}

	rooms, err := roomsFromClaim(claims, a.roomsClaim)
	if err != nil {
		return Identity{}, fail(CodeTokenInvalidClaims, reasonRoomsInvalid, err)
	}

	// The parser enforced a usable exp; the error check only guards
	// against that guarantee going away.
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil {
		return Identity{}, fail(CodeTokenInvalidClaims, reasonNoExpiry, err)
	}

	return Identity{UserID: sub, Rooms: rooms, ExpiresAt: exp.UTC()}, nil
}

// roomsFromClaim extracts the room patterns. An absent claim yields nil
// (any room). A present claim must be an array of valid patterns; null and
// other types are rejected rather than guessed at, since reading them as
// "any room" would fail open and reading them as "no room" would hide an
// issuer bug behind confusing join failures.
func roomsFromClaim(claims jwt.MapClaims, name string) ([]string, error) {
	raw, present := claims[name]
	if !present {
		return nil, nil
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, fmt.Errorf("claim %q is a %s, not an array of strings", name, jsonKind(raw))
	}
	rooms := make([]string, 0, len(list))
	for i, v := range list {
		pattern, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("claim %q element %d is a %s, not a string", name, i, jsonKind(v))
		}
		if !validRoomPattern(pattern) {
			return nil, fmt.Errorf("claim %q element %d %q is not a valid room pattern", name, i, pattern)
		}
		rooms = append(rooms, pattern)
	}
	return rooms, nil
}
