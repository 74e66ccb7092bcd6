package larder

// ModelRecorder is implemented by a GenerationWriter that can record which
// model computed the generation, so that readers can tell which model
// produced a prediction (Generation.Model).
type ModelRecorder interface {
	// SetModel records version (Model.Version) as the model of the
	// generation being written. Call it before Publish.
	SetModel(version string)
}
