package transport

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"time"
)

const (
	helloMagic = "RCT"
	// transportVersion is the version of this handshake and of the
	// framing after it: 2 runs over mutual TLS (1 was a shared-secret
	// HMAC handshake in clear). It is not Config.ProtocolVersion, which
	// versions what the cluster layer sends.
	transportVersion = 2
	// answerLen is the acceptor's answer: a status byte and its protocol
	// version.
	answerLen = 1 + 2
)

// Handshake status bytes, sent by the acceptor after reading the dialer's
// hello. The dialer is authenticated by then (TLS), so telling it why costs
// nothing and turns a silent hang-up into an actionable error on its side.
const (
	statusOK          byte = 0
	statusBadHello    byte = 1
	statusBadLabel    byte = 2
	statusBadVersion  byte = 3
	statusWrongNode   byte = 4
	statusBadIdentity byte = 5
)

// hello is what the dialer says first on a new stream, inside TLS: which
// protocol version it speaks, which cluster it is in, who it is (the name
// must be one its certificate carries), where it can be reached, and whom
// it means to reach.
type hello struct {
	proto  uint16
	label  string
	name   string
	addr   string
	target string
}

func (h hello) encode() []byte {
	b := make([]byte, 0, len(helloMagic)+3+4+len(h.label)+len(h.name)+len(h.addr)+len(h.target))
	b = append(b, helloMagic...)
	b = append(b, transportVersion)
	b = binary.BigEndian.AppendUint16(b, h.proto)
	for _, f := range []string{h.label, h.name, h.addr, h.target} {
		b = append(append(b, byte(len(f))), f...)
	}
	return b
}

// readHello reads a dialer's hello; a stream that is not this transport's
// (another magic or transport version) is errNotTransport.
func readHello(r *bufio.Reader) (hello, error) {
	var head [len(helloMagic) + 3]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return hello{}, truncated(err)
	}
	if string(head[:len(helloMagic)]) != helloMagic || head[len(helloMagic)] != transportVersion {
		return hello{}, errNotTransport
	}
	h := hello{proto: binary.BigEndian.Uint16(head[len(helloMagic)+1:])}
	for _, f := range []*string{&h.label, &h.name, &h.addr, &h.target} {
		s, err := readField(r)
		if err != nil {
			return hello{}, err
		}
		*f = s
	}
	return h, nil
}

var errNotTransport = errors.New("not a ringchat transport hello (another program, or a transport version other than 2)")

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

// handshakeError is a failed handshake: the error for callers (wrapping
// ErrAuth, ErrVersion or ErrHandshake) and the reason for metrics (see
// Metrics.AuthFailure).
type handshakeError struct {
	reason string
	err    error
}

func (e *handshakeError) Error() string { return e.err.Error() }
func (e *handshakeError) Unwrap() error { return e.err }

func fail(reason string, format string, args ...any) *handshakeError {
	return &handshakeError{reason: reason, err: fmt.Errorf(format, args...)}
}

// dialTLS returns the client side of a TLS connection on conn to the node
// named target, checked against the credentials' current CAs.
func dialTLS(conn net.Conn, creds Credentials, target string) (*tls.Conn, error) {
	cert, err := creds.Certificate()
	if err != nil {
		return nil, fmt.Errorf("our certificate: %w", err)
	}
	pool, err := creds.CAs()
	if err != nil {
		return nil, fmt.Errorf("trusted CAs: %w", err)
	}
	return tls.Client(conn, &tls.Config{
		MinVersion: tls.VersionTLS13,
		// No server name goes out in clear (SNI); the acceptor's
		// certificate is checked below, against the exact node name,
		// without wildcards, which crypto/tls's own check would allow.
		InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return cert, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyPeer(cs.PeerCertificates, pool, x509.ExtKeyUsageServerAuth, target, time.Now())
		},
	}), nil
}

// acceptTLS returns the server side of a TLS connection on conn. The
// dialer's certificate must chain to a trusted CA; which node it names is
// checked against its hello, after the handshake.
func acceptTLS(conn net.Conn, creds Credentials) (*tls.Conn, error) {
	cert, err := creds.Certificate()
	if err != nil {
		return nil, fmt.Errorf("our certificate: %w", err)
	}
	pool, err := creds.CAs()
	if err != nil {
		return nil, fmt.Errorf("trusted CAs: %w", err)
	}
	return tls.Server(conn, &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{*cert},
		// Verified below rather than by crypto/tls, so that both
		// directions, and a missing certificate, go through one check.
		ClientAuth: tls.RequestClientCert,
		// Every stream authenticates in full: no resumption, whose tickets
		// would outlive a CA rotated out of the bundle.
		SessionTicketsDisabled: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyPeer(cs.PeerCertificates, pool, x509.ExtKeyUsageClientAuth, "", time.Now())
		},
	}), nil
}

// certError is a peer certificate that failed verifyPeer. wrongName means
// the certificate is trusted but names another node.
type certError struct {
	wrongName bool
	err       error
}

func (e *certError) Error() string { return e.err.Error() }
func (e *certError) Unwrap() error { return e.err }

// verifyPeer checks a peer's certificate chain (leaf first, as sent): it
// must chain to pool at now, allow usage and, unless name is empty, carry
// name exactly as a DNS subject alternative name.
func verifyPeer(chain []*x509.Certificate, pool *x509.CertPool, usage x509.ExtKeyUsage, name string, now time.Time) error {
	if len(chain) == 0 {
		return &certError{err: errors.New("the peer presented no certificate")}
	}
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		return &certError{err: fmt.Errorf("peer certificate %s refused: %w", describe(leaf), err)}
	}
	if name != "" && !slices.Contains(leaf.DNSNames, name) {
		return &certError{wrongName: true, err: fmt.Errorf("peer certificate is for %q, not %q", leaf.DNSNames, name)}
	}
	return nil
}

// describe names a certificate in errors and logs: its DNS names and
// serial number.
func describe(c *x509.Certificate) string {
	return fmt.Sprintf("%q (serial %s)", c.DNSNames, c.SerialNumber.Text(16))
}

// dialHandshake runs the dialer's side on conn, which must carry a
// deadline: TLS, then the hello and the acceptor's answer. It returns the
// TLS connection and the acceptor's verified certificate chain, or a
// *handshakeError.
func dialHandshake(conn net.Conn, creds Credentials, h hello) (*tls.Conn, []*x509.Certificate, error) {
	tc, err := dialTLS(conn, creds, h.target)
	if err != nil {
		return nil, nil, fail("certificate", "%w: %w", ErrAuth, err)
	}
	if err := tc.Handshake(); err != nil {
		return nil, nil, tlsFailure(err, conn.RemoteAddr(), h.target)
	}
	if _, err := tc.Write(h.encode()); err != nil {
		return nil, nil, ioFailure("send hello", err)
	}
	// In TLS 1.3 the acceptor checks our certificate after our side of the
	// handshake is done, so its refusal arrives here, as an alert.
	var ans [answerLen]byte
	if _, err := io.ReadFull(tc, ans[:]); err != nil {
		if ae := remoteAlert(err); ae != "" {
			return nil, nil, alertFailure(ae, err)
		}
		return nil, nil, ioFailure("read the acceptor's answer (overloaded, or an older version?)", err)
	}
	theirs := binary.BigEndian.Uint16(ans[1:])
	switch ans[0] {
	case statusOK:
	case statusBadLabel:
		return nil, nil, fail("label", "%w: the acceptor is not in cluster %q", ErrAuth, h.label)
	case statusBadVersion:
		return nil, nil, fail("version", "%w: %q speaks inter-node protocol version %d, we speak %d: upgrades across protocol versions need every node restarted", ErrVersion, h.target, theirs, h.proto)
	case statusWrongNode:
		return nil, nil, fail("wrong_node", "%w: the node at %s is not %q", ErrHandshake, conn.RemoteAddr(), h.target)
	case statusBadIdentity:
		return nil, nil, fail("identity", "%w: the acceptor refused our name %q: our certificate does not carry it", ErrAuth, h.name)
	case statusBadHello:
		return nil, nil, fail("protocol", "%w: the acceptor did not understand our hello", ErrHandshake)
	default:
		return nil, nil, fail("protocol", "%w: unknown handshake status %d", ErrHandshake, ans[0])
	}
	return tc, tc.ConnectionState().PeerCertificates, nil
}

// acceptHandshake runs the acceptor's side on conn (which must carry a
// deadline): TLS, then the dialer's hello, read through the returned
// reader so that no byte read ahead is lost to the frame reader that
// takes over. It checks the hello against the dialer's certificate and
// against this node (label, version, name) and answers. On success it
// returns the TLS connection, the reader, the hello and the dialer's
// verified chain; otherwise a *handshakeError.
func acceptHandshake(conn net.Conn, creds Credentials, label, self string, proto uint16) (*tls.Conn, *bufio.Reader, hello, []*x509.Certificate, error) {
	tc, err := acceptTLS(conn, creds)
	if err != nil {
		return nil, nil, hello{}, nil, fail("certificate", "%w: %w", ErrAuth, err)
	}
	if err := tc.Handshake(); err != nil {
		return nil, nil, hello{}, nil, tlsFailure(err, conn.RemoteAddr(), "")
	}
	chain := tc.ConnectionState().PeerCertificates
	r := bufio.NewReaderSize(tc, readBufferSize)
	h, err := readHello(r)
	if errors.Is(err, errNotTransport) {
		sendAnswer(tc, statusBadHello, proto)
		return nil, nil, hello{}, nil, fail("protocol", "%w: %w", ErrHandshake, err)
	}
	if err != nil {
		return nil, nil, hello{}, nil, ioFailure("read hello", err)
	}
	// The certificate proves the name; everything else the dialer says is
	// taken from an authenticated peer.
	if h.name == "" || !slices.Contains(chain[0].DNSNames, h.name) {
		sendAnswer(tc, statusBadIdentity, proto)
		return nil, nil, hello{}, nil, fail("identity", "%w: a dialer with certificate %s claimed to be %q", ErrAuth, describe(chain[0]), h.name)
	}
	if h.proto != proto {
		sendAnswer(tc, statusBadVersion, proto)
		return nil, nil, hello{}, nil, fail("version", "%w: %q speaks inter-node protocol version %d, we speak %d: upgrades across protocol versions need every node restarted", ErrVersion, h.name, h.proto, proto)
	}
	if h.label != label {
		sendAnswer(tc, statusBadLabel, proto)
		return nil, nil, hello{}, nil, fail("label", "%w: cluster label mismatch: dialer %q says %q, ours is %q", ErrAuth, h.name, h.label, label)
	}
	if h.target != self {
		sendAnswer(tc, statusWrongNode, proto)
		return nil, nil, hello{}, nil, fail("wrong_node", "%w: dialer %q meant to reach %q, we are %q", ErrHandshake, h.name, h.target, self)
	}
	if err := sendAnswer(tc, statusOK, proto); err != nil {
		return nil, nil, hello{}, nil, ioFailure("answer", err)
	}
	return tc, r, h, chain, nil
}

// sendAnswer sends the acceptor's status and protocol version. After a
// refusal the connection is closed right away, so a failed write changes
// nothing.
func sendAnswer(w io.Writer, status byte, proto uint16) error {
	b := binary.BigEndian.AppendUint16([]byte{status}, proto)
	_, err := w.Write(b)
	return err
}

// tlsFailure classifies a failed TLS handshake. remote is the other side's
// address; target, on the dialer's side, the node it meant to reach.
func tlsFailure(err error, remote net.Addr, target string) *handshakeError {
	var ce *certError
	switch {
	case errors.As(err, &ce) && ce.wrongName:
		return fail("wrong_node", "%w: the node at %s is not %q: %w", ErrHandshake, remote, target, err)
	case errors.As(err, &ce):
		return fail("certificate", "%w: %w", ErrAuth, err)
	}
	if ae := remoteAlert(err); ae != "" {
		return alertFailure(ae, err)
	}
	var rh tls.RecordHeaderError
	if errors.As(err, &rh) {
		return fail("tls", "%w: %s does not speak TLS (an older ringchat, or another program): %w", ErrHandshake, remote, err)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return ioFailure("TLS handshake", err)
	}
	return fail("tls", "%w: TLS handshake with %s: %w", ErrHandshake, remote, err)
}

// remoteAlert returns the description of a TLS alert the other side sent
// ("tls: bad certificate"), or "" if err is not one.
func remoteAlert(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" && op.Err != nil {
		return op.Err.Error()
	}
	return ""
}

// alertFailure classifies an alert from the other side: the certificate
// alerts mean it refused ours.
func alertFailure(alert string, err error) *handshakeError {
	if strings.Contains(alert, "certificate") {
		return fail("certificate", "%w: the peer refused our certificate: %w", ErrAuth, err)
	}
	return fail("tls", "%w: the peer ended the TLS handshake: %w", ErrHandshake, err)
}

// ioFailure classifies an I/O error during the handshake.
func ioFailure(what string, err error) *handshakeError {
	reason := "closed"
	if errors.Is(err, os.ErrDeadlineExceeded) {
		reason = "timeout"
	}
	return fail(reason, "%w: %s: %w", ErrHandshake, what, err)
}

// reasonOf returns a handshake error's reason for metrics.
func reasonOf(err error) string {
	var he *handshakeError
	if errors.As(err, &he) {
		return he.reason
	}
	return "protocol"
}
