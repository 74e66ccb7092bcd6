package ingest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/internal/tlsfiles"
)

// KafkaSettingError is a Kafka setting of a stream that cannot be used,
// such as a TLS file that cannot be read.
type KafkaSettingError struct {
	Stream string
	// Field is the path of the setting within the stream, such as
	// "kafka.tls.ca_file".
	Field string
	Err   error
}

func (e *KafkaSettingError) Error() string {
	return fmt.Sprintf("stream %s: %s: %v", e.Stream, e.Field, e.Err)
}

func (e *KafkaSettingError) Unwrap() error { return e.Err }

// KafkaOptions returns the options of a Kafka client of stream s: its seed
// brokers and, as s.Kafka says, TLS and SASL. Every Kafka client of a
// stream starts from them. It reads the TLS files now, and returns a
// *KafkaSettingError naming the setting of a file that cannot be used, or
// an error when s is not a Kafka stream.
func KafkaOptions(s *larder.Stream) ([]kgo.Opt, error) {
	if s.Kafka == nil {
		return nil, fmt.Errorf("stream %s reads %s, not a Kafka topic", s.Name, s.Source())
	}
	opts := []kgo.Opt{kgo.SeedBrokers(s.Kafka.Brokers...)}
	if t := s.Kafka.TLS; t != nil {
		cfg, err := kafkaTLS(s.Name, t)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	if a := s.Kafka.SASL; a != nil {
		m, err := kafkaSASL(a)
		if err != nil {
			return nil, &KafkaSettingError{Stream: s.Name, Field: "kafka.sasl.mechanism", Err: err}
		}
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}

// kafkaTLS returns the TLS settings of the connections to a stream's
// brokers. Without a server name, the client checks the host of each
// broker's address.
func kafkaTLS(stream string, t *larder.KafkaTLS) (*tls.Config, error) {
	cfg, err := tlsfiles.Client(t.CAFile, t.CertFile, t.KeyFile, t.ServerName)
	var fe *tlsfiles.Error
	switch {
	case !errors.As(err, &fe):
		return cfg, err
	case fe.File == tlsfiles.CA && fe.Err == tlsfiles.ErrNoPEM:
		return nil, &KafkaSettingError{Stream: stream, Field: "kafka.tls.ca_file",
			Err: fmt.Errorf("%s holds no PEM certificate: name the file of the authority that signs the brokers' certificates", t.CAFile)}
	case fe.File == tlsfiles.CA:
		return nil, &KafkaSettingError{Stream: stream, Field: "kafka.tls.ca_file", Err: fe.Err}
	}
	return nil, &KafkaSettingError{Stream: stream, Field: "kafka.tls.cert_file",
		Err: fmt.Errorf("%s with key_file %s: %w", t.CertFile, t.KeyFile, fe.Err)}
}

// kafkaSASL returns the SASL mechanism of a stream's settings.
func kafkaSASL(a *larder.KafkaSASL) (sasl.Mechanism, error) {
	switch a.Mechanism {
	case larder.SASLPlain:
		return plain.Auth{User: a.Username, Pass: a.Password}.AsMechanism(), nil
	case larder.SASLScramSHA256:
		return scram.Auth{User: a.Username, Pass: a.Password}.AsSha256Mechanism(), nil
	case larder.SASLScramSHA512:
		return scram.Auth{User: a.Username, Pass: a.Password}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("unknown mechanism %q: want %s, %s or %s", a.Mechanism, larder.SASLPlain, larder.SASLScramSHA256, larder.SASLScramSHA512)
}

// pingWait bounds how long a consumer waits, as it starts, for a first
// answer of the brokers.
const pingWait = 15 * time.Second

// authTries is how many times in a row a broker must close the
// connection as larder authenticates before checkKafka takes it for a
// refused password, and authPause the pause between two tries.
const (
	authTries = 3
	authPause = time.Second
)

// checkKafka asks the brokers of s for their metadata, and returns an
// error when they refuse the stream's credentials or certificates: these
// do not get better by retrying. Any other failure (a broker that is down)
// returns nil, for the consumer to retry as it goes. A connection closed
// as larder authenticated is asked again, up to authTries times: a dropped
// connection looks the same once, and must not stop the stream for good.
// w watches the client cl.
func checkKafka(ctx context.Context, s *larder.Stream, cl *kgo.Client, w *authWatch) error {
	ctx, cancel := context.WithTimeout(ctx, pingWait)
	defer cancel()
	for try := 1; ; try++ {
		err := cl.Ping(ctx)
		refused := kafkaRefused(s, err, w)
		if refused == nil || w.refusedBy() == "" || !closed(err) || try == authTries {
			return refused
		}
		w.reset()
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(authPause):
		}
	}
}

// authWatch is a hook of a Kafka client that notes a broker which closed
// the connection while larder authenticated on it: that is how a broker
// that does not answer the last step of SASL with an error refuses a
// password.
type authWatch struct {
	mu     sync.Mutex
	broker string // host:port; "" while none did
}

var _ kgo.HookBrokerRead = (*authWatch)(nil)

func (w *authWatch) OnBrokerRead(meta kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if key != int16(kmsg.SASLAuthenticate) || !closed(err) {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.broker = net.JoinHostPort(meta.Host, strconv.Itoa(int(meta.Port)))
}

// refusedBy returns the broker that closed a connection while larder
// authenticated; "" when none did, or w is nil.
func (w *authWatch) refusedBy() string {
	if w == nil {
		return ""
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.broker
}

// reset forgets the broker that closed a connection as larder
// authenticated.
func (w *authWatch) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.broker = ""
}

// closed reports whether err is a connection the other end closed.
func closed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

// kafkaRefused returns, for an error of a Kafka client of s, an error that
// says what the brokers refused and which settings to check, or nil when
// err is no refusal of the stream's credentials or certificates. w, when
// not nil, watched the client.
func kafkaRefused(s *larder.Stream, err error, w *authWatch) error {
	if err == nil || s.Kafka == nil {
		return nil
	}
	brokers := strings.Join(s.Kafka.Brokers, ", ")
	why := err
	if b := w.refusedBy(); b != "" && closed(err) {
		brokers = b
		why = fmt.Errorf("%w: it closed the connection as larder authenticated", kerr.SaslAuthenticationFailed)
	}
	var (
		unknownCA *x509.UnknownAuthorityError
		hostname  x509.HostnameError
		verify    *tls.CertificateVerificationError
	)
	switch {
	case errors.Is(why, kerr.SaslAuthenticationFailed):
		a := s.Kafka.SASL
		if a == nil {
			return fmt.Errorf("stream %s: kafka broker %s refused to authenticate larder: %w", s.Name, brokers, why)
		}
		password := "the password"
		if a.PasswordEnv != "" {
			password = "the password in environment variable " + a.PasswordEnv + " (kafka.sasl.password_env)"
		}
		return fmt.Errorf("stream %s: kafka broker %s refused user %s (SASL %s): %w; check kafka.sasl.username and %s",
			s.Name, brokers, a.Username, a.Mechanism, why, password)
	case errors.Is(err, kerr.UnsupportedSaslMechanism):
		mech := "none"
		if s.Kafka.SASL != nil {
			mech = s.Kafka.SASL.Mechanism
		}
		return fmt.Errorf("stream %s: kafka broker %s does not take SASL mechanism %s: %w; set kafka.sasl.mechanism to one it takes", s.Name, brokers, mech, err)
	case errors.Is(err, kerr.IllegalSaslState):
		return fmt.Errorf("stream %s: kafka broker %s: %w; does it take SASL on this port? Check kafka.sasl", s.Name, brokers, err)
	case errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &verify):
		return fmt.Errorf("stream %s: kafka broker %s: its certificate is not trusted: %w; check kafka.tls.ca_file (the authority that signs the brokers' certificates) and kafka.tls.server_name", s.Name, brokers, err)
	}
	return nil
}
