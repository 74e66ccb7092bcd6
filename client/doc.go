// Package client is the Go client of larder's FeatureService, for the
// product services that read features and rankings from a larder server.
//
// Dial connects with the defaults a service wants: larder's generated
// codec (no protobuf reflection per call), keepalive pings, retries with
// backoff on UNAVAILABLE (every method is read-only), a default deadline,
// and TLS and a bearer token as options, matching the server's
// server.tls_* and server.auth settings. GetFeatures returns a Features,
// typed accessors over the server's columnar response:
//
//	f, err := c.GetFeatures(ctx, client.Int64Keys(42, 43), "user_profile:*")
//	age, ok := f.Column("user_profile:age")
//	if !ok {
//		return errors.New("no user_profile:age in the response")
//	}
//	for i, row := range f.All() {
//		if !row.IsNull(age) {
//			use(i, row.Int64(age))
//		}
//	}
//
// Rank and ListViews return the API's messages as they are. The program
// in examples/democlient reads the server of `larder demo --keep-serving`
// with this package. The package
// imports no other part of larder but its generated API (proto/larder/v1),
// so a service that imports it builds without cgo, Redis or ONNX Runtime.
package client
