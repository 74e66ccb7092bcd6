package ingest_test

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/larder-dev/larder"
)

// saslDropProxy forwards connections to a broker, and closes the first
// drops of them on which the client sends a SASLAuthenticate request, as a
// load balancer or a restarting broker can drop a connection at any step.
type saslDropProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	drops  int // connections still to close at SASLAuthenticate
}

func newSASLDropProxy(t *testing.T, target string, drops int) *saslDropProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &saslDropProxy{ln: ln, target: target, drops: drops}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

func (p *saslDropProxy) serve(c net.Conn) {
	defer c.Close()
	b, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer b.Close()
	go func() { io.Copy(c, b); c.Close() }()
	for {
		var size [4]byte
		if _, err := io.ReadFull(c, size[:]); err != nil {
			return
		}
		req := make([]byte, binary.BigEndian.Uint32(size[:]))
		if _, err := io.ReadFull(c, req); err != nil {
			return
		}
		if len(req) >= 2 && int16(binary.BigEndian.Uint16(req)) == int16(kmsg.SASLAuthenticate) {
			p.mu.Lock()
			drop := p.drops > 0
			if drop {
				p.drops--
			}
			p.mu.Unlock()
			if drop {
				return
			}
		}
		if _, err := b.Write(append(size[:], req...)); err != nil {
			return
		}
	}
}

// TestKafkaAuthDropAtStart keeps a consumer going whose first connections
// are dropped as it authenticates, with a password the brokers take: a
// connection closed once is no refused password, and must not stop the
// stream for good.
func TestKafkaAuthDropAtStart(t *testing.T) {
	t.Parallel()
	f := newSecureKafkaFixture(t, []kfake.Opt{kfake.EnableSASL(), kfake.Superuser(larder.SASLScramSHA256, "larder", "s3cret")},
		larder.KafkaTopic{SASL: &larder.KafkaSASL{Mechanism: larder.SASLScramSHA256, Username: "larder", Password: "s3cret"}})
	proxy := newSASLDropProxy(t, f.brokers[0], 2)
	f.s.Kafka.Brokers = []string{proxy.ln.Addr().String()}

	f.produce(t, rec(0, "", `{"user_id": 7, "ts": `+ms(t0.Add(time.Minute))+`, "clicks": 70, "url": "/secure"}`))
	c := f.consumer(f.st, 10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	deadline := time.After(60 * time.Second)
	for c.Counts().Written != 1 {
		select {
		case err := <-done:
			t.Fatalf("Run returned %v before it wrote the record", err)
		case <-deadline:
			t.Fatal("waited 60s for the record to be written")
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}
