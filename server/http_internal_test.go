package server

import "testing"

// TestHTTPGatewayHeaders checks that the gateway's matcher never passes on
// a header naming a metadata key the gateway sets itself (the ticket's,
// the request id's), in any form, whatever grpc-gateway's own matcher
// would do with it, and that it passes on what grpc-gateway's default
// does.
func TestHTTPGatewayHeaders(t *testing.T) {
	for _, tc := range []struct {
		header string
		want   string // the metadata key; refused when empty
	}{
		{"Larder-Gateway-Peer", ""},
		{"larder-gateway-peer", ""},
		{"Grpc-Metadata-Larder-Gateway-Peer", ""},
		{"GRPC-METADATA-LARDER-GATEWAY-PEER", ""},
		{"X-Request-Id", ""},
		{"x-request-id", ""},
		{"Grpc-Metadata-X-Request-Id", ""},
		{"grpc-metadata-x-request-id", ""},
		{"X-Something-Else", ""},
		{"User-Agent", "grpcgateway-User-Agent"},
	} {
		got, ok := gatewayHeaders(tc.header)
		if ok != (tc.want != "") || got != tc.want {
			t.Errorf("gatewayHeaders(%q) = %q, %v; want %q, %v", tc.header, got, ok, tc.want, tc.want != "")
		}
	}
}
