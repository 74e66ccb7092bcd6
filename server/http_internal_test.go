package server

import (
	"fmt"
	"net/http"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/larder-dev/larder"
)

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

// TestHTTPStatus checks the reason toStatus gives a RESOURCE_EXHAUSTED
// status and the HTTP status of the gateway's errors: a request past a
// limit (larder.ErrTooLarge) is 400, as a request that can never succeed;
// one shed because the server is busy (larder.ErrOverloaded) is 429, as
// one to retry later.
func TestHTTPStatus(t *testing.T) {
	for _, tc := range []struct {
		err    error
		reason string
		want   int
	}{
		{fmt.Errorf("3 keys × 2 features is past server.max_request_cells: %w", larder.ErrTooLarge), ReasonTooLarge, http.StatusBadRequest},
		{fmt.Errorf("the response is past server.max_response_bytes: %w", larder.ErrTooLarge), ReasonTooLarge, http.StatusBadRequest},
		{fmt.Errorf("server busy: %w", larder.ErrOverloaded), ReasonOverloaded, http.StatusTooManyRequests},
		{status.Error(codes.ResourceExhausted, "no details"), "", http.StatusTooManyRequests},
		{&larder.InvalidError{Msg: "keys: too many"}, "", http.StatusBadRequest},
		{larder.ErrUnavailable, "", http.StatusServiceUnavailable},
	} {
		err := toStatus(tc.err)
		if got := reason(status.Convert(err)); got != tc.reason {
			t.Errorf("%v: reason %q, want %q", tc.err, got, tc.reason)
		}
		if got := gatewayStatus(err); got != tc.want {
			t.Errorf("%v: %d, want %d", tc.err, got, tc.want)
		}
	}
}
