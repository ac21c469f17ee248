package netobs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"strings"
	"syscall"
)

// Error is an upstream failure that knows its error class and the phase it happened in.
// The Transport returns it (wrapped in *url.Error by http.Client) for every failure it
// classified itself; ClassOf finds it.
type Error struct {
	Class string // one of the Class* constants, TLSAlertClass(...) or HTTPClass(...)
	Phase Phase  // the phase that failed
	Err   error  // the underlying error
}

// Error says the phase and the underlying error.
func (e *Error) Error() string { return string(e.Phase) + ": " + e.Err.Error() }

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Timeout reports whether the failure is a timeout, for callers that test net.Error.
func (e *Error) Timeout() bool {
	return e.Class == ClassTimeout || e.Class == ClassTCPTimeout || e.Class == ClassDNSTimeout
}

// ErrConnCap says that a request waited the whole connect timeout for a connection because
// the Transport's cap on connections to the upstream's host was reached
// (TransportConfig.MaxConnsPerHost). The *Error that carries it has class ClassConnCap.
var ErrConnCap = errors.New("upstream connection cap reached")

// timeoutCause is a context cancellation cause of one of the Transport's own timeouts.
type timeoutCause struct {
	class string
	phase Phase
	msg   string
}

func (c *timeoutCause) Error() string { return c.msg }
func (c *timeoutCause) Timeout() bool { return true }

var (
	errConnectTimeout   = &timeoutCause{ClassTCPTimeout, PhaseConnect, "connect timeout"}
	errTLSTimeout       = &timeoutCause{ClassTimeout, PhaseTLS, "TLS handshake timeout"}
	errFirstByteTimeout = &timeoutCause{ClassTimeout, PhaseTTFB, "no response header before the first-byte timeout"}
	errBodyIdleTimeout  = &timeoutCause{ClassTimeout, PhaseTransfer, "body idle timeout: no byte received"}
)

// ClassOf returns the error class of err: the class an *Error or *DNSError carries, or the
// class recognised from the error chain (refused, reset, certificate, TLS alert, timeout,
// truncated body, cancelled). It returns "" for a nil error and ClassOther for anything
// it does not recognise.
func ClassOf(err error) string {
	if err == nil {
		return ""
	}
	var oe *Error
	if errors.As(err, &oe) {
		return oe.Class
	}
	var tc *timeoutCause
	if errors.As(err, &tc) {
		return tc.class
	}
	var de *DNSError
	if errors.As(err, &de) {
		return de.Class()
	}
	if name, ok := tlsAlertName(err); ok {
		return TLSAlertClass(name)
	}
	var (
		certInvalid   x509.CertificateInvalidError
		hostErr       x509.HostnameError
		unknownAuth   x509.UnknownAuthorityError
		verifyErr     *tls.CertificateVerificationError
		systemRootErr x509.SystemRootsError
	)
	switch {
	case errors.As(err, &verifyErr), errors.As(err, &certInvalid), errors.As(err, &hostErr),
		errors.As(err, &unknownAuth), errors.As(err, &systemRootErr):
		return ClassTLSCert
	case errors.Is(err, syscall.ECONNREFUSED):
		return ClassTCPRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return ClassTCPReset
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return ClassTCPUnreachable
	case errors.Is(err, io.ErrUnexpectedEOF):
		return ClassBodyTruncated
	case errors.Is(err, context.Canceled):
		return ClassCanceled
	case isTimeout(err):
		return ClassTimeout
	}
	var re tls.RecordHeaderError
	if errors.As(err, &re) || strings.Contains(err.Error(), "tls: ") {
		return ClassTLSOther
	}
	return ClassOther
}

// remoteAlertPrefix is how crypto/tls reports an alert received over TCP: the text is the
// alert's description, and tls.AlertError is only used with QUIC.
const remoteAlertPrefix = "remote error: tls: "

// alertNames maps crypto/tls's description of an alert to its RFC 8446 name. It is built
// from tls.AlertError's own texts, so it follows the standard library's wording.
var alertNames = func() map[string]string {
	codes := map[uint8]string{ // RFC 8446 section 6, RFC 5246 section 7.2, RFC 8701-era additions
		0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 21: "decryption_failed",
		22: "record_overflow", 30: "decompression_failure", 40: "handshake_failure",
		42: "bad_certificate", 43: "unsupported_certificate", 44: "certificate_revoked",
		45: "certificate_expired", 46: "certificate_unknown", 47: "illegal_parameter",
		48: "unknown_ca", 49: "access_denied", 50: "decode_error", 51: "decrypt_error",
		60: "export_restriction", 70: "protocol_version", 71: "insufficient_security",
		80: "internal_error", 86: "inappropriate_fallback", 90: "user_canceled",
		100: "no_renegotiation", 109: "missing_extension", 110: "unsupported_extension",
		111: "certificate_unobtainable", 112: "unrecognized_name",
		113: "bad_certificate_status_response", 114: "bad_certificate_hash_value",
		115: "unknown_psk_identity", 116: "certificate_required", 120: "no_application_protocol",
		121: "ech_required",
	}
	m := make(map[string]string, len(codes))
	for code, name := range codes {
		text := strings.TrimPrefix(tls.AlertError(code).Error(), "tls: ")
		m[text] = name
	}
	return m
}()

// tlsAlertName finds a TLS alert received from the peer in err's text and returns its
// RFC name ("unknown_ca"); an alert crypto/tls has no text for is named "alert_<code>".
func tlsAlertName(err error) (string, bool) {
	var ae tls.AlertError
	if errors.As(err, &ae) { // QUIC
		text := strings.TrimPrefix(ae.Error(), "tls: ")
		if n, ok := alertNames[text]; ok {
			return n, true
		}
	}
	msg := err.Error()
	i := strings.Index(msg, remoteAlertPrefix)
	if i < 0 {
		return "", false
	}
	text := msg[i+len(remoteAlertPrefix):]
	// The alert text may be followed by more context in a wrapping error.
	// Take the longest match: "bad certificate" is a prefix of other alerts' texts.
	best, name := 0, ""
	for t, n := range alertNames {
		if len(t) > best && strings.HasPrefix(text, t) && (len(text) == len(t) || !isLetter(text[len(t)])) {
			best, name = len(t), n
		}
	}
	if name != "" {
		return name, true
	}
	if strings.HasPrefix(text, "alert(") {
		if j := strings.IndexByte(text, ')'); j > 0 {
			return "alert_" + text[len("alert("):j], true
		}
	}
	return "unknown", true
}

func isLetter(b byte) bool { return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' }
