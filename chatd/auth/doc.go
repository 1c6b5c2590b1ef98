// Package auth decides who a client connecting to chatd is.
//
// A client proves its identity with a signed JWT (HS256, RS256 or ES256,
// depending on which keys the server is configured with), or, when the
// deployment allows it, by merely announcing an anonymous name. The result
// is an [Identity] that the rest of the server uses for authorisation, most
// notably through [Identity.CanJoin].
//
// Every failure is reported as an [*Error] whose Code is stable for
// programs and whose Reason is short and safe enough to put into a
// WebSocket close frame as-is.
package auth
