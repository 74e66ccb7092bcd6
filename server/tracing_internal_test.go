package server

import (
	"testing"

	"google.golang.org/grpc/stats"
)

// TestTraced checks which calls get a span: larder's services, not health
// checks nor reflection.
func TestTraced(t *testing.T) {
	tests := []struct {
		method string
		want   bool
	}{
		{"/larder.v1.FeatureService/GetFeatures", true},
		{"/larder.v1.FeatureService/Rank", true},
		{"/larder.v1.IngestService/Push", true},
		{"/larder.v1.AdminService/Reload", true},
		{"/grpc.health.v1.Health/Check", false},
		{"/grpc.health.v1.Health/Watch", false},
		{"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", false},
		{"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", false},
	}
	for _, tc := range tests {
		t.Run(tc.method, func(t *testing.T) {
			if got := traced(&stats.RPCTagInfo{FullMethodName: tc.method}); got != tc.want {
				t.Errorf("traced(%s) = %v, want %v", tc.method, got, tc.want)
			}
		})
	}
}
