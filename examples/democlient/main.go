// Command democlient reads features and a ranking from the server that
// `larder demo --keep-serving` starts, with larder's Go client, as a
// product service would:
//
//	larder demo --keep-serving       # prints "gRPC: 127.0.0.1:PORT"
//	go run ./examples/democlient -addr 127.0.0.1:PORT
//
// It prints three users' profiles and last events (user -1 does not
// exist, so its row is not found), the home feed ranked for user 1 at
// 18:00, and the project's views.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"github.com/larder-dev/larder/client"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:7070", "the address of larder's gRPC server")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := run(ctx, *addr, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, addr string, out io.Writer) error {
	c, err := client.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()

	// Features: typed columns, one row per key, in the request's order.
	f, err := c.GetFeatures(ctx, client.Int64Keys(1, 2, -1),
		"user_profile:age", "user_profile:country", "user_profile:is_premium", "user_last_event:*")
	if err != nil {
		return fmt.Errorf("GetFeatures: %w", err)
	}
	col := func(ref string) int {
		i, ok := f.Column(ref)
		if !ok {
			log.Fatalf("the response has no column %s", ref)
		}
		return i
	}
	age, country, premium := col("user_profile:age"), col("user_profile:country"), col("user_profile:is_premium")
	lastType, lastItem := col("user_last_event:last_event_type"), col("user_last_event:last_item_id")
	for i, row := range f.All() {
		if !row.Found(age) {
			fmt.Fprintf(out, "user row %d: %s\n", i, row.Status(age))
			continue
		}
		fmt.Fprintf(out, "user row %d: age %d, country %s, premium %v; last event %s (item %d) at %s\n",
			i, row.Int64(age), row.String(country), row.Bool(premium),
			row.String(lastType), row.Int64(lastItem), row.EventTime(lastType).Format(time.RFC3339))
	}

	// Rank: the home feed of user 1, from the candidates the demo stored
	// for the user, at 18:00.
	ranked, err := c.Rank(ctx, &larderv1.RankRequest{
		Ranker:          "home_feed",
		ContextKey:      client.Int64Key(1),
		RequestFeatures: map[string]*larderv1.Value{"hour_of_day": client.Int64(18)},
		TopK:            3,
	})
	if err != nil {
		return fmt.Errorf("Rank: %w", err)
	}
	for i, cand := range ranked.GetCandidates() {
		fmt.Fprintf(out, "home feed %d: item %d, score %.4f\n", i+1, cand.GetKey().GetInt64Value(), cand.GetScore())
	}

	views, err := c.ListViews(ctx)
	if err != nil {
		return fmt.Errorf("ListViews: %w", err)
	}
	for _, v := range views {
		fmt.Fprintf(out, "view %s (%s): %d features, %d rows\n", v.GetName(), v.GetKind(), len(v.GetFeatures()), v.GetRows())
	}
	return nil
}
