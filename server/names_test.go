package server_test

import (
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/server"
)

// TestUnknownNamesNameTheProject checks that a ranker or a view the server
// does not know is refused with the name of the server's project, for a
// client that called the server of another project.
func TestUnknownNamesNameTheProject(t *testing.T) {
	t.Run("a server with rankers", func(t *testing.T) {
		f := newFixture(t, fixtureConfig{models: map[string]server.Model{"reco": failingModel{}}})
		_, err := f.client.Rank(t.Context(), &larderv1.RankRequest{Ranker: "home_feed", ContextKey: intKey(1)})
		wantCode(t, err, codes.InvalidArgument, `ranker: unknown ranker "home_feed" (the server's project srvtest has rankers: reco)`)
		_, err = f.client.GetFeatures(t.Context(), &larderv1.GetFeaturesRequest{Keys: intKeys(1), Features: []string{"user_activity:clicks"}})
		wantCode(t, err, codes.InvalidArgument,
			`features[0]: unknown view "user_activity" (the server's project srvtest has views: user_profile, user_stats, item_info, user_never)`)
	})
	t.Run("a server without rankers", func(t *testing.T) {
		f := newFixture(t, fixtureConfig{models: map[string]server.Model{}, edit: func(p *larder.Project) { p.Rankers = nil }})
		_, err := f.client.Rank(t.Context(), &larderv1.RankRequest{Ranker: "home_feed", ContextKey: intKey(1)})
		wantCode(t, err, codes.InvalidArgument, `ranker: unknown ranker "home_feed" (the server's project srvtest has no rankers)`)
		_, err = f.client.Rank(t.Context(), &larderv1.RankRequest{ContextKey: intKey(1)})
		wantCode(t, err, codes.InvalidArgument, `ranker: is required (the server's project srvtest has no rankers)`)
	})
}
