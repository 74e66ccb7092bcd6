package store

import "github.com/larder-dev/larder"

// fieldModel is the metadata hash field holding the version of the model
// that computed a generation (a prediction view's); "" or absent otherwise.
const fieldModel = "model"

var _ larder.ModelRecorder = (*Writer)(nil)

// SetModel records version (larder.Model.Version) as the model that computed
// the generation. Publish stores it in the generation's metadata, and the
// published generation reports it in larder.Generation.Model, as Live does
// afterwards. Call it before Publish, from the goroutine that calls Put.
func (w *Writer) SetModel(version string) { w.model = version }

var _ larder.InputRecorder = (*Writer)(nil)

// SetInputs records the generations of other views the generation is
// computed from. Publish stores them in the generation's metadata, and the
// published generation reports them in larder.Generation.Inputs. Call it
// before Publish, from the goroutine that calls Put.
func (w *Writer) SetInputs(inputs []larder.InputGeneration) {
	w.inputs = append(w.inputs[:0], inputs...)
}
