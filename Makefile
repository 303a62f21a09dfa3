# nacd build. `make test` is the command CI runs (.ci/run) and the README
# shows: vet, the whole test suite under the race detector, then every fuzz
# target briefly.

GO       ?= go
# FUZZTIME is an execution count, not a duration: Go 1.26's fuzz coordinator
# can fail a target with a bare "context deadline exceeded" when a duration
# -fuzztime ends while a worker is mid-input (golang/go#75804, fixed in Go
# 1.27; seen here in CI on a loaded machine). 10000 inputs take 1-10 s per
# target on 2 cores. For a longer local run: make fuzz FUZZTIME=200000x.
FUZZTIME ?= 10000x
BIN      ?= bin/nacd
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: run build test vet unit fuzz bench lint clean

## run: run nacd with the built-in configuration (./nacd-data, 127.0.0.1:1812, :9812)
run:
	$(GO) run ./cmd/nacd serve

## build: build bin/nacd
build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/nacd

## test: go vet, every test with -race, every fuzz target for $(FUZZTIME) inputs
test: vet unit fuzz

vet:
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 ./...

# Every `func FuzzX` in a _test.go file is fuzzed on its own (go test runs
# one fuzz target per invocation), so new targets are picked up unlisted.
fuzz:
	@set -e; \
	files=$$(grep -rl --include='*_test.go' --exclude-dir=.git '^func Fuzz' . | sort); \
	for f in $$files; do \
		dir=$$(dirname "$$f"); \
		for name in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$$f"); do \
			echo "== fuzz $$dir $$name ($(FUZZTIME))"; \
			$(GO) test -run='^$$' -fuzz="^$$name$$" -fuzztime=$(FUZZTIME) "$$dir"; \
		done; \
	done

## bench: every benchmark, with allocations
bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./...

## bench-compare: nacd vs FreeRADIUS 3.2 side by side on loopback (installs freeradius if missing; BENCH_SECONDS per cell)
.PHONY: bench-compare
bench-compare:
	scripts/bench-compare

## bench-latency: nacd's own p99 time per Access-Request at half its one-core capacity (server and load generator pinned to different CPUs)
.PHONY: bench-latency
bench-latency:
	scripts/bench-latency

## lint: gofmt must list nothing; go vet; staticcheck when installed
lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt -l: these files need gofmt -w:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@if command -v staticcheck >/dev/null 2>&1; then staticcheck ./...; \
	else echo "lint: staticcheck not installed (optional): go install honnef.co/go/tools/cmd/staticcheck@latest"; fi

clean:
	rm -rf bin
