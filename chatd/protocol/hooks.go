package protocol

// CloseTryAgainLater (RFC 6455 1013): the server cannot take the
// connection now for a reason that is not the client's (the backend's
// connect hook is down and its failure policy is deny); reconnect later,
// with backoff.
const CloseTryAgainLater = 1013
