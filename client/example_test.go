package client_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log"
	"os"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/larder-dev/larder/client"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

// The examples run against a larder server that exampleServer starts in
// the test process; a service dials its own server's address, such as
// the one `larder demo --keep-serving` prints.

func ExampleClient_GetFeatures() {
	addr, stop := exampleServer()
	defer stop()

	c, err := client.Dial(addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	f, err := c.GetFeatures(context.Background(), client.Int64Keys(1, 2, 3), "user_profile:age", "user_profile:score")
	if err != nil {
		log.Fatal(err)
	}
	// The response has a column per reference; Column finds it by name.
	age, ok := f.Column("user_profile:age")
	score, ok2 := f.Column("user_profile:score")
	if !ok || !ok2 {
		log.Fatal("the response lacks a column it was asked for")
	}
	for i, row := range f.All() {
		switch {
		case row.Status(age) == larderv1.FeatureStatus_FEATURE_STATUS_NOT_FOUND:
			fmt.Printf("row %d: not found\n", i)
		case row.IsNull(age):
			fmt.Printf("row %d: age null, score %.2f (%s)\n", i, row.Float64(score), row.Status(score))
		default:
			fmt.Printf("row %d: age %d, score %.2f (%s)\n", i, row.Int64(age), row.Float64(score), row.Status(score))
		}
	}
	// Output:
	// row 0: age 34, score 0.75 (FEATURE_STATUS_PRESENT)
	// row 1: age null, score -2.50 (FEATURE_STATUS_STALE)
	// row 2: not found
}

func ExampleClient_Rank() {
	addr, stop := exampleServer()
	defer stop()

	c, err := client.Dial(addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	resp, err := c.Rank(context.Background(), &larderv1.RankRequest{
		Ranker:        "reco",
		ContextKey:    client.Int64Key(1),
		CandidateKeys: client.StringKeys("a", "b", "c"),
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, cand := range resp.GetCandidates() {
		fmt.Printf("%s %.1f\n", cand.GetKey().GetStringValue(), cand.GetScore())
	}
	// Output:
	// a 3.0
	// c 2.0
}

func ExampleClient_ListViews() {
	addr, stop := exampleServer()
	defer stop()

	c, err := client.Dial(addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	views, err := c.ListViews(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	for _, v := range views {
		fmt.Printf("%s: %d features, %d rows\n", v.GetName(), len(v.GetFeatures()), v.GetRows())
	}
	// Output:
	// user_profile: 5 features, 2 rows
	// item_info: 1 features, 3 rows
}

// A service dials its larder server once, with the server's TLS authority
// and a bearer token of the read role, and shares the client. Against
// `larder demo --keep-serving`, dial the address it prints, in plaintext
// and without a token. (This example is compiled, not run: it needs a
// server.)
func ExampleDial() {
	pool := x509.NewCertPool() // the authority of server.tls_cert_file
	c, err := client.Dial("larder.internal:50051",
		client.WithTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}),
		client.WithBearerToken(os.Getenv("LARDER_TOKEN")),
		client.WithTimeout(200*time.Millisecond))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	f, err := c.GetFeatures(context.Background(), client.Int64Keys(42), "user_profile:*")
	if status.Code(err) == codes.Unavailable {
		log.Print("larder is unavailable after the client's retries: serve defaults")
		return
	}
	if err != nil {
		log.Fatal(err)
	}
	if col, ok := f.Column("user_profile:age"); ok && !f.IsNull(col, 0) {
		fmt.Println("age", f.Int64(col, 0))
	}
}

// A service that looks its columns up with ColumnOfType, once per
// response, gets an error when a column is missing or of another type than
// it reads, for instance after a change of its view's configuration,
// instead of the panic of the typed accessor (Float64 of an int64 column).
func ExampleFeatures_ColumnOfType() {
	f, err := client.NewFeatures(&larderv1.GetFeaturesResponse{
		RowCount: 1,
		Views:    []*larderv1.ViewRows{{View: "user_profile", Statuses: []larderv1.FeatureStatus{larderv1.FeatureStatus_FEATURE_STATUS_PRESENT}, EventTimeMicros: []int64{1}}},
		Columns:  []*larderv1.FeatureColumn{{Name: "user_profile:age", Type: larderv1.ValueType_VALUE_TYPE_INT64, Int64Values: []int64{34}}},
	})
	if err != nil {
		log.Fatal(err)
	}
	age, err := f.ColumnOfType("user_profile:age", larderv1.ValueType_VALUE_TYPE_INT64)
	fmt.Println(f.Int64(age, 0), err)
	_, err = f.ColumnOfType("user_profile:age", larderv1.ValueType_VALUE_TYPE_FLOAT64)
	fmt.Println(err)
	_, err = f.ColumnOfType("user_profile:agee", larderv1.ValueType_VALUE_TYPE_INT64)
	fmt.Println(err)
	// Output:
	// 34 <nil>
	// client: column "user_profile:age" is of type int64, not float64: read it with Int64, or any type with Value
	// client: no column "user_profile:agee" in the response: it holds the columns of the request's references ("view:feature" or "view:*")
}
