package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/client"
	"github.com/larder-dev/larder/internal/tlsfiles"
	"github.com/larder-dev/larder/server"
)

// tokenEnv is the environment variable the CLI's clients read their bearer
// token from, when no flag names one.
const tokenEnv = "LARDER_TOKEN"

// clientOptions are the flags of the commands that call a running server
// (rank, reload): how to reach it over TLS, and the token to present.
type clientOptions struct {
	tls        bool
	caFile     string
	certFile   string
	keyFile    string
	serverName string
	token      string
	tokenFile  string
}

func (o *clientOptions) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.BoolVar(&o.tls, "tls", false, "connect with TLS (default: on when the address comes from the project file and server.tls_cert_file is set, or when any of --ca-file, --cert-file, --key-file and --server-name is given)")
	f.StringVar(&o.caFile, "ca-file", "", "PEM file of the authorities that sign the server's certificate (default: the project's server.tls_cert_file itself when the address comes from the project file, else the system's authorities)")
	f.StringVar(&o.certFile, "cert-file", "", "a client certificate (PEM), for a server that asks for one (server.tls_client_ca_file)")
	f.StringVar(&o.keyFile, "key-file", "", "the key of --cert-file")
	f.StringVar(&o.serverName, "server-name", "", "the name the server's certificate must carry, when it is not the host of the address")
	f.StringVar(&o.token, "token", "", "a bearer token to present (other users may see it in the list of processes: prefer --token-file or "+tokenEnv+")")
	f.StringVar(&o.tokenFile, "token-file", "", "a file holding the bearer token to present (default: the environment variable "+tokenEnv+")")
}

// dial returns a client connection to the server at addr. p is the project
// whose server settings addr was taken from, or nil when the address was
// given on the command line (it may be another server): the project's
// server.tls_cert_file then turns TLS on and is trusted as the server's
// certificate, unless the flags say otherwise.
func (o clientOptions) dial(addr string, p *larder.Project) (*grpc.ClientConn, error) {
	cfg, err := o.tlsConfig(p)
	if err != nil {
		return nil, err
	}
	creds := insecure.NewCredentials()
	if cfg != nil {
		creds = credentials.NewTLS(cfg)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds), server.CodecDialOption()}
	token, err := o.bearerToken()
	if err != nil {
		return nil, err
	}
	if token != "" {
		if cfg == nil && !client.Loopback(addr) {
			return nil, fmt.Errorf("a bearer token would cross the network to %s in clear text: pass --tls (and --ca-file), or call a loopback address", addr)
		}
		opts = append(opts, grpc.WithPerRPCCredentials(client.BearerToken(token, cfg != nil)))
	}
	return grpc.NewClient(addr, opts...)
}

// tlsConfig returns the TLS settings of the connection, or nil for
// plaintext.
func (o clientOptions) tlsConfig(p *larder.Project) (*tls.Config, error) {
	caFile := o.caFile
	on := o.tls || o.caFile != "" || o.certFile != "" || o.keyFile != "" || o.serverName != ""
	if p != nil && p.Server.TLSCertFile != "" {
		on = true
		if caFile == "" {
			// The server's own certificate, trusted as it is: the project
			// file names it, and its authority may be a private one.
			caFile = p.Path(p.Server.TLSCertFile)
		}
	}
	if !on {
		return nil, nil
	}
	switch {
	case o.certFile != "" && o.keyFile == "":
		return nil, errors.New("--cert-file needs --key-file: the key of the client certificate")
	case o.keyFile != "" && o.certFile == "":
		return nil, errors.New("--key-file needs --cert-file: the client certificate of the key")
	}
	cfg, err := tlsfiles.Client(caFile, o.certFile, o.keyFile, o.serverName)
	var fe *tlsfiles.Error
	switch {
	case !errors.As(err, &fe):
		return cfg, err
	case fe.File == tlsfiles.CA && fe.Err == tlsfiles.ErrNoPEM:
		return nil, fmt.Errorf("--ca-file %s holds no PEM certificate", caFile)
	case fe.File == tlsfiles.CA:
		return nil, fmt.Errorf("--ca-file: %w", fe.Err)
	}
	return nil, fmt.Errorf("--cert-file %s and --key-file %s: %w", o.certFile, o.keyFile, fe.Err)
}

// bearerToken returns the token to present: --token, else the content of
// --token-file, else $LARDER_TOKEN; "" for none.
func (o clientOptions) bearerToken() (string, error) {
	switch {
	case o.token != "" && o.tokenFile != "":
		return "", errors.New("give --token or --token-file, not both")
	case o.token != "":
		return o.token, nil
	case o.tokenFile != "":
		b, err := os.ReadFile(o.tokenFile)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		token := strings.TrimSpace(string(b))
		if token == "" || strings.ContainsAny(token, " \t\r\n") {
			return "", fmt.Errorf("--token-file %s: want the token alone, on one line", o.tokenFile)
		}
		return token, nil
	}
	token, _ := os.LookupEnv(tokenEnv)
	return strings.TrimSpace(token), nil
}

// hint says what may be wrong with the options when a call failed with st.
func (o clientOptions) hint(st *status.Status, p *larder.Project) string {
	msg := st.Message()
	secure := o.tls || o.caFile != "" || o.certFile != "" || o.serverName != "" || p != nil && p.Server.TLSCertFile != ""
	switch {
	case st.Code() == codes.Unauthenticated && o.token == "" && o.tokenFile == "" && os.Getenv(tokenEnv) == "":
		return "; the server checks its callers: present a token with --token-file, --token or " + tokenEnv + ", or a client certificate with --cert-file and --key-file"
	case st.Code() == codes.PermissionDenied:
		return "; the server knows the caller, but its role does not allow this call"
	case st.Code() != codes.Unavailable:
		return ""
	case strings.Contains(msg, "connection refused") && p != nil:
		return "; nothing listens there (server.listen of the project file): start `larder serve`, or pass --addr the address of a running server (`larder demo --keep-serving` prints its own)"
	case strings.Contains(msg, "connection refused"):
		return "; nothing listens at --addr: start `larder serve` there, or pass the address a running server printed (`larder demo --keep-serving` prints its own)"
	case strings.Contains(msg, "certificate required") || strings.Contains(msg, "bad certificate"):
		return "; the server asks for a client certificate its authorities signed: pass --cert-file and --key-file"
	case secure && (strings.Contains(msg, "certificate") || strings.Contains(msg, "x509")):
		return "; check --ca-file (the authority that signed the server's certificate) and --server-name (a name the certificate carries)"
	case secure && (strings.Contains(msg, "first record does not look like a TLS handshake") || strings.Contains(msg, "EOF")):
		return "; TLS is on: does the server speak TLS (server.tls_cert_file)?"
	case !secure:
		return "; if the server speaks TLS (server.tls_cert_file), pass --tls and --ca-file"
	}
	return ""
}
