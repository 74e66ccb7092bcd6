# larder — the two commands a newcomer needs are `make demo` and `make test`.
GO      ?= go
BIN     := bin/larder
# The ONNX Runtime library is fetched once into the user's cache folder;
# ONNXRUNTIME_LIB overrides it.
FETCH_ORT := $(GO) run ./models/cmd/fetch-onnxruntime

.PHONY: all build install demo docs test test-short check cross setup-cross fuzz fuzz-brief fuzz-run kill-trials soak bench bench-serve proto lint setup setup-onnxruntime setup-debian setup-redis setup-protoc setup-chromium setup-python vet clean

all: build

# The commit goes into `larder version`.
LDFLAGS := -X main.buildCommit=$(shell git describe --always --dirty 2>/dev/null)

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/larder

# Installs larder into GOBIN (or GOPATH/bin), to run it as `larder`.
install:
	$(GO) install -ldflags '$(LDFLAGS)' ./cmd/larder
	@echo "installed $$( $(GO) env GOBIN || true )$$( [ -n "$$($(GO) env GOBIN)" ] || echo "$$($(GO) env GOPATH)/bin" )/larder"

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

# The web console's test loads the page in headless Chromium; this makes
# sure Debian's chromium is installed.
setup-chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  echo "installing chromium (Debian package)"; \
	  (apt-get install -y -q chromium >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null)); }

# The check that proto/'s generated code is current runs Debian's protoc with
# the plugins pinned in tools/gen/go.mod (`make proto` runs buf instead).
setup-protoc:
	@command -v protoc >/dev/null 2>&1 || { \
	  echo "installing protoc (Debian package protobuf-compiler)"; \
	  (apt-get install -y -q protobuf-compiler >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null && apt-get install -y -q protobuf-compiler >/dev/null)); }

# The Python client's tests run Debian's Python packages (a python3 without
# them, such as a pyenv one first in PATH, is passed over for /usr/bin/python3),
# and its staleness check Debian's grpc_python_plugin.
setup-python:
	@{ command -v grpc_python_plugin >/dev/null 2>&1 && /usr/bin/python3 -c 'import grpc, google.protobuf' >/dev/null 2>&1; } || { \
	  echo "installing python3-grpcio, python3-protobuf and protobuf-compiler-grpc"; \
	  (apt-get install -y -q python3-grpcio python3-protobuf protobuf-compiler-grpc >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null && apt-get install -y -q python3-grpcio python3-protobuf protobuf-compiler-grpc >/dev/null)); }

# All the Debian packages the tests need, in one apt-get call for those that
# are missing (one dpkg run is quicker than one per package, and apt-get
# calls cannot overlap).
setup-debian:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v protoc >/dev/null 2>&1 || missing="$$missing protobuf-compiler"; \
	{ command -v chromium || command -v chromium-browser; } >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v grpc_python_plugin >/dev/null 2>&1 || missing="$$missing protobuf-compiler-grpc"; \
	/usr/bin/python3 -c 'import grpc, google.protobuf' >/dev/null 2>&1 || missing="$$missing python3-grpcio python3-protobuf"; \
	[ -z "$$missing" ] || { \
	  echo "installing Debian packages:$$missing"; \
	  (apt-get install -y -q $$missing >/dev/null 2>&1 || \
	   (apt-get update -q >/dev/null && apt-get install -y -q $$missing >/dev/null)); }

setup: setup-onnxruntime setup-debian

demo: setup-onnxruntime build
	./$(BIN) demo

# testrun prints each package as it starts and as it ends, the output of
# failing tests only, and a count (see cmd/testrun). The fuzz targets' seed
# corpora and kept inputs run as tests; then every target fuzzes briefly.
#
# The set-up (downloads and Debian packages, mostly waiting) runs beside vet
# (mostly compiling). The packages whose tests take longest are named first,
# so that they start first, and three test binaries run at once: most tests
# wait on Redis, servers and child processes more than they compute, as do
# the tests marked parallel, four of which run at once in a package.
TEST_FIRST := ./cmd/larder ./store ./materializer ./server ./proto/larder/v1 ./scheduler ./queue
test:
	@$(MAKE) --no-print-directory -j3 setup vet
	@mkdir -p .work && $(GO) build -o .work/testrun ./cmd/testrun
	.work/testrun -count=1 -vet=off -p 3 -parallel 4 -timeout 15m $(TEST_FIRST) ./...
	@$(MAKE) --no-print-directory fuzz-brief

vet:
	$(GO) vet ./...

# make test and make lint: staticcheck, and the API's lint, which builds buf
# (several hundred MB of modules, minutes from cold caches).
check: test
	@$(MAKE) --no-print-directory lint

# Debian's cross-compiler for linux/arm64 (and its C library) and QEMU's
# user-mode emulator, for make cross.
setup-cross:
	@{ command -v aarch64-linux-gnu-gcc && command -v qemu-aarch64 && [ -d /usr/aarch64-linux-gnu/include ]; } >/dev/null 2>&1 || { \
	  command -v apt-get >/dev/null 2>&1 || { echo "make cross needs Debian's gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and qemu-user (it runs on Debian or Ubuntu)" >&2; exit 1; }; \
	  echo "installing gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and qemu-user (Debian packages)"; \
	  apt-get install -y -q --no-install-recommends gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user; }; }

# Builds larder for the platforms the ONNX Runtime package ships, into
# bin/cross/: linux/arm64 with cgo through Debian's cross-compiler, then
# runs it under QEMU (`larder setup` fetches the linux/arm64 library, with
# npm, and `larder version` must load it); darwin/arm64
# and darwin/amd64 without cgo, which is all that builds here (no macOS C
# toolchain): those binaries do everything but load ONNX Runtime, and a
# build without cgo says so; go vet then checks every package, tests
# included, as built for macOS (the tests of package models, which all load
# ONNX Runtime, need cgo). Build on a Mac for a darwin larder that ranks.
CROSS_DIR := bin/cross
cross: setup-cross
	@mkdir -p $(CROSS_DIR)
	CGO_ENABLED=1 CC=aarch64-linux-gnu-gcc GOOS=linux GOARCH=arm64 \
	  $(GO) build -ldflags '$(LDFLAGS)' -o $(CROSS_DIR)/larder-linux-arm64 ./cmd/larder
	CGO_ENABLED=0 GOOS=darwin GOARCH=arm64 \
	  $(GO) build -ldflags '$(LDFLAGS)' -o $(CROSS_DIR)/larder-darwin-arm64-nocgo ./cmd/larder
	CGO_ENABLED=0 GOOS=darwin GOARCH=amd64 \
	  $(GO) build -ldflags '$(LDFLAGS)' -o $(CROSS_DIR)/larder-darwin-amd64-nocgo ./cmd/larder
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o $(CROSS_DIR)/larder-linux-amd64-nocgo ./cmd/larder
	CGO_ENABLED=0 GOOS=darwin GOARCH=arm64 $(GO) vet ./...
	@for b in $(CROSS_DIR)/*; do \
	  echo "$$b: $$($(GO) version -m $$b | awk '$$1 == "build" && $$2 ~ /^(GOOS|GOARCH|CGO_ENABLED)=/ {printf "%s ", $$2}')"; \
	done
	qemu-aarch64 -L /usr/aarch64-linux-gnu $(CROSS_DIR)/larder-linux-arm64 setup
	@qemu-aarch64 -L /usr/aarch64-linux-gnu $(CROSS_DIR)/larder-linux-arm64 version | tee $(CROSS_DIR)/arm64-version.txt
	@grep -q '^onnxruntime [0-9]' $(CROSS_DIR)/arm64-version.txt || \
	  { echo "cross: the linux/arm64 larder did not load ONNX Runtime under QEMU" >&2; exit 1; }
	@[ "$$(uname -m)" != x86_64 ] || $(CROSS_DIR)/larder-linux-amd64-nocgo version | grep -q 'built without cgo' || \
	  { echo "cross: a build without cgo does not say it cannot load ONNX Runtime" >&2; exit 1; }

test-short:
	$(GO) test -short ./...

# The fuzz targets, as package:target. Their seed corpora, and the inputs
# kept in each package's testdata/fuzz/, run with every `go test`.
FUZZ_TARGETS := .:FuzzSplitRef .:FuzzParseKey .:FuzzParseWindow \
	./config:FuzzParse \
	./store:FuzzDecodeRow ./store:FuzzEncodeRow ./store:FuzzDecodeNumbers \
	./server:FuzzFeatureRefs ./server:FuzzGetFeatures ./server:FuzzRank ./server:FuzzRequestBytes ./server:FuzzPush \
	./client:FuzzDecodeFeatures
# How long each target fuzzes: a duration (2m) or a number of inputs (200x,
# counting the corpus it first replays).
FUZZTIME ?= 2m
# How long an input that fails, or that reaches new code, is minimized.
FUZZMINIMIZETIME ?= 5s

# Fuzzes every target for FUZZTIME in turn, then prints how many inputs each
# ran. A failing input is written to its package's testdata/fuzz/, where
# every later `go test` runs it; the logs go to .work/fuzz/. Each package's
# test binary is built once and run for each of its targets, with go test's
# own corpus cache.
fuzz: setup fuzz-run

# How the fuzz targets' test binaries are built: `-fuzz .` instruments every
# package they hold, so that the fuzzing engine is guided by the code each
# input reaches; it compiles every package again, minutes from cold caches.
FUZZBUILD ?= -fuzz .

# The brief fuzzing `make test` ends with: 200 inputs per target, however
# fast the machine, run by the test binaries as the tests built them, without
# instrumentation (so linking only, nothing compiled again, every package's
# binary by one go command, which links them at once): Go's fuzzing engine
# mutates the corpus unguided, which for 200 inputs loses little. `make
# fuzz` fuzzes with guidance.
fuzz-brief:
	@$(MAKE) --no-print-directory fuzz-run FUZZTIME=200x FUZZBUILD=

fuzz-run:
	@mkdir -p .work/fuzz
	@: > .work/fuzz/summary.txt; fail=0; built=; begin=$$(date +%s); \
	cache=$$($(GO) env GOCACHE)/fuzz; \
	if [ -z "$(strip $(FUZZBUILD))" ]; then \
	  pkgs=$$(for t in $(FUZZ_TARGETS); do echo $${t%%:*}; done | sort -u); \
	  $(GO) test -c -o $(CURDIR)/.work/fuzz/ $$pkgs || exit 1; built=" $$pkgs "; \
	fi; \
	for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; name=$${t#*:}; ip=$$($(GO) list $$pkg) || exit 1; \
	  bin=$(CURDIR)/.work/fuzz/$${ip##*/}.test; log=.work/fuzz/$$name.log; \
	  case " $$built " in *" $$pkg "*) ;; *) \
	    $(GO) test -c $(FUZZBUILD) -o $$bin $$pkg || exit 1; built="$$built $$pkg";; \
	  esac; \
	  echo "fuzz: $$name ($$pkg) for $(FUZZTIME)" >&2; start=$$(date +%s); \
	  if (cd $$pkg && $$bin -test.run '^$$' -test.fuzz "^$$name\$$" -test.fuzztime $(FUZZTIME) \
	       -test.fuzzminimizetime $(FUZZMINIMIZETIME) -test.fuzzcachedir $$cache/$$ip) > $$log 2>&1; \
	  then res=ok; else res=FAIL; fail=1; tail -n 25 $$log; fi; \
	  execs=$$(grep -o 'execs: [0-9]*\|coverage: [0-9]*' $$log | tail -n 1 | cut -d' ' -f2); \
	  corpus=$$(grep -o 'total: [0-9]*\|baseline coverage: [0-9]*/[0-9]*\|seed corpus: [0-9]*/[0-9]*' $$log | tail -n 1 | grep -o '[0-9]*$$'); \
	  printf '%-18s %-9s %-4s %10s execs %7s corpus %5ss\n' $$name $$pkg $$res "$${execs:-0}" "$${corpus:-0}" \
	    $$(( $$(date +%s) - start )) >> .work/fuzz/summary.txt; \
	done; \
	echo "fuzz: $(FUZZTIME) per target; $$(( $$(date +%s) - begin ))s in all, builds included;" \
	  "execs counts the inputs run, the corpus replayed first included"; \
	cat .work/fuzz/summary.txt; exit $$fail

# SIGKILL trials of materialize: KILL_TRIALS runs of `larder materialize`,
# each killed at a random moment while readers check every answer, then
# one sweep (see docs/testing.md). `make test` runs 3 of them;
# KILL_SEED repeats the kill moments of an earlier run.
KILL_TRIALS ?= 50
kill-trials: setup-redis
	LARDER_KILL_TRIALS=$(KILL_TRIALS) $(if $(KILL_SEED),LARDER_KILL_SEED=$(KILL_SEED)) \
	  $(GO) test -count=1 -timeout 60m -run '^TestKillTrials$$' -v ./cmd/larder

# The soak: `larder serve` on a redis-server under a steady GetFeatures and
# Rank load for SOAK, publishing every view every SOAK_PUBLISH; it prints
# the server's RSS and the p99 latencies at the start and at the end (see
# docs/benchmarks.md, Soak).
SOAK ?= 10m
SOAK_PUBLISH ?= 1m
soak: setup
	LARDER_SOAK=$(SOAK) LARDER_SOAK_PUBLISH=$(SOAK_PUBLISH) \
	  $(GO) test -count=1 -timeout 0 -run '^TestSoak$$' -v ./cmd/larder

# Benchmarks run against real redis-server processes; every figure is printed
# next to its floor (raw Redis, gRPC, ONNX Runtime, Parquet) from the same run.
# The heavy benchmark's 11M events are generated once (a few seconds, with
# progress) and cached in the user's cache folder, ~/.cache/larder/bench.
BENCH_PKGS := ./store ./server ./client ./materializer ./models ./cmd/larder ./queue ./ingest
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

# The README tour's transcripts, written again from a run of the demo (see
# tools/readme): the demo's output, and every `$ ./bin/larder …` command's
# against its server and store. grpcurl's transcripts are kept as written.
docs: setup-onnxruntime build
	@mkdir -p .work && $(GO) -C tools build -o ../.work/readme ./readme
	.work/readme -larder ./$(BIN) -readme README.md

# buf and its modules (several hundred MB) are built on first use.
proto:
	$(GO) tool -modfile=tools/go.mod buf generate
	protoc --proto_path=proto --python_out=clients/python --pyi_out=clients/python \
	  --grpc_python_out=clients/python --plugin=protoc-gen-grpc_python=$$(command -v grpc_python_plugin) \
	  larder/v1/larder.proto

# staticcheck (pinned in tools/go.mod) over the Go code, with its default
# checks; then the API stays within buf's STANDARD and COMMENTS rules
# (buf.yaml) and in buf's canonical format (`go tool -modfile=tools/go.mod
# buf format -w` rewrites it).
lint:
	$(GO) tool -modfile=tools/go.mod staticcheck ./...
	$(GO) tool -modfile=tools/go.mod buf lint
	$(GO) tool -modfile=tools/go.mod buf format --diff --exit-code

clean:
	rm -rf bin .work
