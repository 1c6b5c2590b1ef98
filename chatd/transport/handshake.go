package transport

import (
	"bufio"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"os"
)

const (
	helloMagic        = "RCT"
	protocolVersion   = 1
	nonceLen          = 32
	macLen            = sha256.Size
	acceptorHelloLen  = len(helloMagic) + 1 + nonceLen
	domainLabel       = "ringchat transport v1"
	directionDialer   = "dialer"
	directionAcceptor = "acceptor"
)

// Handshake status bytes, sent by the acceptor after reading the dialer's
// hello. Telling a rejected dialer why costs nothing (it knows it failed) and
// turns a silent hang-up into an actionable error on its side.
const (
	statusOK          byte = 0
	statusBadVersion  byte = 1
	statusBadLabel    byte = 2
	statusBadProof    byte = 3
	statusWrongNode   byte = 4
	statusBadIdentity byte = 5
)

// identity is what a handshake binds together: who is dialing (name and
// advertised address), whom it means to reach, and in which cluster.
type identity struct {
	label  string
	name   string
	addr   string
	target string
}

// proof computes one side's HMAC over the transcript. Every variable-length
// field is length-prefixed, so that moving bytes between adjacent fields
// changes the input; the direction label makes the dialer's proof useless as
// the acceptor's and vice versa.
func proof(secret []byte, direction string, id identity, nonceA, nonceD []byte) []byte {
	m := hmac.New(sha256.New, secret)
	writeField(m, domainLabel)
	writeField(m, direction)
	writeField(m, id.label)
	m.Write(nonceA)
	m.Write(nonceD)
	writeField(m, id.name)
	writeField(m, id.addr)
	writeField(m, id.target)
	return m.Sum(nil)
}

func writeField(h hash.Hash, s string) {
	h.Write([]byte{byte(len(s))})
	io.WriteString(h, s)
}

func appendField(b []byte, s string) []byte {
	return append(append(b, byte(len(s))), s...)
}

// dialHandshake runs the dialer's side on conn, which must carry a deadline.
// A nil error means both sides proved the secret and the acceptor is
// id.target; otherwise it also returns a short reason for metrics (see
// Metrics.AuthFailure).
func dialHandshake(conn net.Conn, secret []byte, id identity) (string, error) {
	var hello [acceptorHelloLen]byte
	if _, err := io.ReadFull(conn, hello[:]); err != nil {
		return ioReason(err), fmt.Errorf("%w: read acceptor hello: %w", ErrHandshake, err)
	}
	if string(hello[:len(helloMagic)]) != helloMagic {
		return "protocol", fmt.Errorf("%w: %s is not a ringchat transport endpoint", ErrHandshake, conn.RemoteAddr())
	}
	if v := hello[len(helloMagic)]; v != protocolVersion {
		return "protocol", fmt.Errorf("%w: acceptor speaks protocol version %d, we speak %d", ErrHandshake, v, protocolVersion)
	}
	nonceA := hello[len(helloMagic)+1:]
	nonceD := make([]byte, nonceLen)
	if _, err := rand.Read(nonceD); err != nil {
		return "protocol", fmt.Errorf("%w: generate nonce: %w", ErrHandshake, err)
	}

	msg := make([]byte, 0, 4+4+len(id.label)+len(id.name)+len(id.addr)+len(id.target)+nonceLen+macLen)
	msg = append(msg, helloMagic...)
	msg = append(msg, protocolVersion)
	msg = appendField(msg, id.label)
	msg = appendField(msg, id.name)
	msg = appendField(msg, id.addr)
	msg = appendField(msg, id.target)
	msg = append(msg, nonceD...)
	msg = append(msg, proof(secret, directionDialer, id, nonceA, nonceD)...)
	if _, err := conn.Write(msg); err != nil {
		return ioReason(err), fmt.Errorf("%w: send hello: %w", ErrHandshake, err)
	}

	var status [1]byte
	if _, err := io.ReadFull(conn, status[:]); err != nil {
		return ioReason(err), fmt.Errorf("%w: acceptor hung up before answering (overloaded, or an older version?): %w", ErrHandshake, err)
	}
	switch status[0] {
	case statusOK:
	case statusBadLabel:
		return "label", fmt.Errorf("%w: acceptor rejected cluster label %q", ErrAuth, id.label)
	case statusBadProof:
		return "credentials", fmt.Errorf("%w: acceptor rejected our proof (shared secret mismatch)", ErrAuth)
	case statusWrongNode:
		return "wrong_node", fmt.Errorf("%w: the node at %s is not %q", ErrHandshake, conn.RemoteAddr(), id.target)
	case statusBadVersion:
		return "protocol", fmt.Errorf("%w: acceptor does not support protocol version %d", ErrHandshake, protocolVersion)
	case statusBadIdentity:
		return "protocol", fmt.Errorf("%w: acceptor rejected node name %q", ErrHandshake, id.name)
	default:
		return "protocol", fmt.Errorf("%w: unknown handshake status %d", ErrHandshake, status[0])
	}
	got := make([]byte, macLen)
	if _, err := io.ReadFull(conn, got); err != nil {
		return ioReason(err), fmt.Errorf("%w: read acceptor proof: %w", ErrHandshake, err)
	}
	if !hmac.Equal(got, proof(secret, directionAcceptor, id, nonceA, nonceD)) {
		return "credentials", fmt.Errorf("%w: acceptor could not prove the shared secret", ErrAuth)
	}
	return "", nil
}

// acceptHandshake runs the acceptor's side on conn (which must carry a
// deadline), reading through r so that no byte read ahead is lost to the
// frame reader that takes over. It returns the dialer's identity, or an
// error and a short reason for metrics (see Metrics.AuthFailure).
func acceptHandshake(conn net.Conn, r *bufio.Reader, secret []byte, label, self string) (identity, string, error) {
	nonceA := make([]byte, nonceLen)
	if _, err := rand.Read(nonceA); err != nil {
		return identity{}, "protocol", fmt.Errorf("%w: generate nonce: %w", ErrHandshake, err)
	}
	hello := make([]byte, 0, acceptorHelloLen)
	hello = append(hello, helloMagic...)
	hello = append(hello, protocolVersion)
	hello = append(hello, nonceA...)
	if _, err := conn.Write(hello); err != nil {
		return identity{}, ioReason(err), fmt.Errorf("%w: send hello: %w", ErrHandshake, err)
	}

	var head [len(helloMagic) + 1]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return identity{}, ioReason(err), fmt.Errorf("%w: read dialer hello: %w", ErrHandshake, err)
	}
	if string(head[:len(helloMagic)]) != helloMagic {
		return identity{}, "protocol", fmt.Errorf("%w: not a ringchat transport client", ErrHandshake)
	}
	if v := head[len(helloMagic)]; v != protocolVersion {
		reject(conn, statusBadVersion)
		return identity{}, "protocol", fmt.Errorf("%w: dialer speaks protocol version %d, we speak %d", ErrHandshake, v, protocolVersion)
	}
	var id identity
	for _, f := range []*string{&id.label, &id.name, &id.addr, &id.target} {
		s, err := readField(r)
		if err != nil {
			return identity{}, ioReason(err), fmt.Errorf("%w: read dialer hello: %w", ErrHandshake, err)
		}
		*f = s
	}
	tail := make([]byte, nonceLen+macLen)
	if _, err := io.ReadFull(r, tail); err != nil {
		return identity{}, ioReason(err), fmt.Errorf("%w: read dialer hello: %w", ErrHandshake, err)
	}
	nonceD, got := tail[:nonceLen], tail[nonceLen:]

	// The label is checked before the proof only to report the more useful
	// cause; either way the dialer is rejected.
	if id.label != label {
		reject(conn, statusBadLabel)
		return identity{}, "label", fmt.Errorf("%w: cluster label mismatch: dialer %q says %q, ours is %q", ErrAuth, id.name, id.label, label)
	}
	if !hmac.Equal(got, proof(secret, directionDialer, id, nonceA, nonceD)) {
		reject(conn, statusBadProof)
		return identity{}, "credentials", fmt.Errorf("%w: dialer claiming to be %q failed to prove the shared secret", ErrAuth, id.name)
	}
	// From here the dialer is a proven member, so telling it more is safe.
	if id.name == "" {
		reject(conn, statusBadIdentity)
		return identity{}, "protocol", fmt.Errorf("%w: dialer sent an empty node name", ErrHandshake)
	}
	if id.target != self {
		reject(conn, statusWrongNode)
		return identity{}, "wrong_node", fmt.Errorf("%w: dialer %q meant to reach %q, we are %q", ErrHandshake, id.name, id.target, self)
	}
	answer := append([]byte{statusOK}, proof(secret, directionAcceptor, id, nonceA, nonceD)...)
	if _, err := conn.Write(answer); err != nil {
		return identity{}, ioReason(err), fmt.Errorf("%w: send proof: %w", ErrHandshake, err)
	}
	return id, "", nil
}

// reject tells the dialer why it is being turned away. The connection is
// closed right after, so a failed write changes nothing.
func reject(conn net.Conn, status byte) {
	_, _ = conn.Write([]byte{status})
}

func readField(r *bufio.Reader) (string, error) {
	n, err := r.ReadByte()
	if err != nil {
		return "", truncated(err)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", truncated(err)
	}
	return string(b), nil
}

// ioReason classifies a handshake I/O error for metrics and log levels.
func ioReason(err error) string {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return "timeout"
	}
	return "closed"
}
