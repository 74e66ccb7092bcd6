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
//	age, err := f.ColumnOfType("user_profile:age", larderv1.ValueType_VALUE_TYPE_INT64)
//	if err != nil {
//		return err // no such column, or not an int64 one
//	}
//	for i, row := range f.All() {
//		if !row.IsNull(age) {
//			use(i, row.Int64(age))
//		}
//	}
//
// A typed accessor reads a column of its own type only: Float64 of an
// int64 column panics, with a message that names the column, its type and
// the accessor to use, as reflect.Value.Int panics on a string and as an
// index out of range does, where it would otherwise read a zero that looks
// like a value. A column's type is the same in every row, so the check
// belongs once per column, not in an ok or an error of every read:
// ColumnOfType looks a column up and checks its type with an error, and
// Value reads a column of any type. Column answers -1 and false for a name
// the response lacks, and an accessor given that -1 panics saying so.
//
// Rank and ListViews return the API's messages as they are. The program
// in examples/democlient reads the server of `larder demo --keep-serving`
// with this package. The package
// imports no other part of larder but its generated API (proto/larder/v1),
// so a service that imports it builds without cgo, Redis or ONNX Runtime.
package client
