// Package tlsfiles builds the TLS settings of larder's connections as a
// client (to Redis, to Kafka brokers, to a larder server) from the files
// that the project or the command line names, so that each kind of
// connection reads its files, and checks the server it reaches, the same
// way. Its callers name the settings in their errors.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
)

// File is which of the files of Client an *Error is about.
type File int

const (
	// CA is the file of the authorities that sign the server's
	// certificate.
	CA File = iota
	// Cert is the client certificate, with its key.
	Cert
)

// ErrNoPEM is the Err of an *Error about a CA file that holds no PEM
// certificate.
var ErrNoPEM = errors.New("holds no PEM certificate")

// Error is a file of Client that cannot be used: Err is the error of
// reading it (or ErrNoPEM), of loading the certificate and its key.
type Error struct {
	File File
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }

func (e *Error) Unwrap() error { return e.Err }

// Client returns the TLS settings of a client connection, TLS 1.2 at
// least: the authorities of caFile (the system's without one), the client
// certificate of certFile and keyFile (none when both are ""), and the
// name the server's certificate must carry (the host of each address when
// serverName is ""). A file that cannot be used gives an *Error.
func Client(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, &Error{File: CA, Err: err}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &Error{File: CA, Err: ErrNoPEM}
		}
		cfg.RootCAs = pool
	}
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, &Error{File: Cert, Err: err}
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
