// Package bench is larder's serving load generator, which `larder bench`
// runs. It builds its own world (a redis-server child process or a given
// Redis, a synthetic project written straight into the store, a random
// ranker model) and starts the larder binary again as the server process
// (see ServerArgs and NewServerWorld). Then it calls GetFeatures and Rank
// at several concurrencies next to their floors (an empty gRPC call, raw
// Redis reads, a raw ONNX Runtime run, and composed floors served by the
// same server), and prints, per call and concurrency, throughput, exact
// latency percentiles, and the CPU time per call of the server process and
// of the callers, from each process's own accounting.
package bench
