// Package demo generates the synthetic e-commerce data set of larder's demo
// project "shop" and writes the project's files: users, items and about a
// million interaction events as Parquet, and a larder.yaml that describes
// them.
//
// The data follow a known ground truth: a user clicks an item shown to them
// with probability sigmoid(f(user, item, hour of day)), where f rewards the
// user's preference for the item's category, a price close to what the user
// usually spends, item quality and popularity, discounts for price-sensitive
// users and evening hours. A re-rank model trained on TrainingSet therefore
// learns something real, and the demo can show it.
//
// Everything is deterministic given Options.Seed and Options.Now: the same
// options produce the same bytes. The package does no Redis, gRPC or ONNX
// work; the larder command wires those.
package demo
