# larder — the two commands a newcomer needs are `make demo` and `make test`.
GO      ?= go
BIN     := bin/larder
# The ONNX Runtime library is fetched once into the user's cache folder;
# ONNXRUNTIME_LIB overrides it.
FETCH_ORT := $(GO) run ./models/cmd/fetch-onnxruntime

.PHONY: all build demo test test-short bench bench-serve proto lint setup setup-onnxruntime setup-redis clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/larder

setup-onnxruntime:
	@$(FETCH_ORT)

# Tests start their own redis-server processes on free ports; this makes sure
# Debian's redis-server is installed.
setup-redis:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server (Debian package)"; \
	  (apt-get install -y -q redis-server >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null && apt-get install -y -q redis-server >/dev/null)); }
	@# The package's own service is not needed: tests start their own servers.

setup: setup-onnxruntime setup-redis

demo: setup-onnxruntime build
	./$(BIN) demo

test: setup
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 15m ./...

test-short:
	$(GO) test -short ./...

# Benchmarks run against real redis-server processes; every figure is printed
# next to its floor (raw Redis, gRPC, ONNX Runtime, Parquet) from the same run.
# The heavy benchmark's 11M events are generated once (a few seconds, with
# progress) and cached in the user's cache folder, ~/.cache/larder/bench.
BENCH_PKGS := ./store ./server ./materializer ./models ./cmd/larder ./queue
bench: setup
	@mkdir -p .work
	@echo "bench: $(BENCH_PKGS), about 2 to 3 minutes on 2 cores; raw results go to .work/bench.txt"
	@$(GO) test -c -o .work/materializer.test ./materializer
	@.work/materializer.test -heavy.prepare
	@start=$$(date +%s); \
	for pkg in $(BENCH_PKGS); do \
	  echo "bench: $$pkg ($$(( $$(date +%s) - start ))s so far)" >&2; \
	  $(GO) test -run '^$$' -bench . -benchmem -count 1 -timeout 30m $$pkg || exit 1; \
	done > .work/bench.txt || { cat .work/bench.txt; exit 1; }; \
	echo "bench: done in $$(( $$(date +%s) - start ))s" >&2
	@$(GO) run ./cmd/benchtable < .work/bench.txt
	@echo "(raw results: .work/bench.txt)"

# The serving load generator: GetFeatures and Rank at several concurrencies,
# each next to its floor (empty gRPC call, raw Redis reads, raw ONNX run).
bench-serve: setup build
	./$(BIN) bench

proto:
	$(GO) tool -modfile=tools/go.mod buf generate

lint:
	$(GO) tool -modfile=tools/go.mod buf lint

clean:
	rm -rf bin .work
