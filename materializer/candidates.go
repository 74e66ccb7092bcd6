package materializer

import (
	"context"
	"fmt"

	"github.com/larder-dev/larder"
)

// runCandidates materializes a candidates view.
func (m *Materializer) runCandidates(ctx context.Context, v *larder.View, rep Report) (Report, error) {
	return rep, fmt.Errorf("materialize %s: %s views cannot be materialized yet", v.Name, v.Kind)
}
