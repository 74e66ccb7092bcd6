package materializer

import (
	"context"
	"fmt"

	"github.com/larder-dev/larder"
)

// runPrediction materializes a prediction view.
func (m *Materializer) runPrediction(ctx context.Context, v *larder.View, rep Report) (Report, error) {
	return rep, fmt.Errorf("materialize %s: %s views cannot be materialized yet", v.Name, v.Kind)
}
