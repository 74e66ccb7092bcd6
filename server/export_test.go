package server

import "crypto/x509"

// PlantGatewayTicket makes ticket a live ticket of h for cert, as the
// ticket of a request in flight would be, until the function it returns
// is called.
func PlantGatewayTicket(h *HTTP, ticket string, cert *x509.Certificate) func() {
	h.peers.certs.Store(ticket, cert)
	return func() { h.peers.certs.Delete(ticket) }
}

// GatewayTickets counts the live tickets of h.
func GatewayTickets(h *HTTP) int {
	n := 0
	h.peers.certs.Range(func(any, any) bool { n++; return true })
	return n
}
