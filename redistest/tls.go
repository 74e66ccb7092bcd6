package redistest

import (
	"strconv"
	"testing"
)

// TLSFiles are the PEM files a TLS redis-server is started with.
type TLSFiles struct {
	// CertFile and KeyFile are the server's certificate and key.
	CertFile, KeyFile string
	// CAFile is the authority that client certificates must be signed by.
	CAFile string
	// AuthClients makes the server ask every client for a certificate.
	AuthClients bool
}

// StartTLS starts a redis-server like Start, which also speaks TLS with
// files on another free loopback port, TLSAddr. Addr stays a plaintext
// port, for the test's own setup and inspection.
func StartTLS(tb testing.TB, files TLSFiles) *Server {
	tb.Helper()
	bin, err := ensureBinary()
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	port, err := freePort(false)
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	auth := "no"
	if files.AuthClients {
		auth = "yes"
	}
	s := start(tb, bin, []string{
		"--tls-port", strconv.Itoa(port),
		"--tls-cert-file", files.CertFile,
		"--tls-key-file", files.KeyFile,
		"--tls-ca-cert-file", files.CAFile,
		"--tls-auth-clients", auth,
	})
	s.TLSAddr = "127.0.0.1:" + strconv.Itoa(port)
	return s
}
