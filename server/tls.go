package server

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/larder-dev/larder"
)

// TLSConfig returns the TLS settings of a server with settings s: its
// certificate and key (s.TLSCertFile, s.TLSKeyFile) and, with
// s.TLSClientCAFile, the authorities every client's certificate must be
// signed by (mutual TLS). Paths must be resolved already. It returns nil
// and no error when s has no certificate (plaintext), and an error naming
// the setting and the file that cannot be used. The files are read once:
// a renewed certificate is served after a restart.
func TLSConfig(s larder.Server) (*tls.Config, error) {
	if s.TLSCertFile == "" && s.TLSKeyFile == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(s.TLSCertFile, s.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("server.tls_cert_file %s and server.tls_key_file %s: %w", s.TLSCertFile, s.TLSKeyFile, err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if s.TLSClientCAFile != "" {
		pem, err := os.ReadFile(s.TLSClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("server.tls_client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("server.tls_client_ca_file %s holds no PEM certificate", s.TLSClientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}
