# Ringtail. `make run` starts one broker on 127.0.0.1:9092 with data in ./data; `make test` runs the suite.
GO       ?= go
BIN      := bin
VERSION  := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
DATA_DIR ?= ./data
LISTEN   ?= 127.0.0.1:9092
# Fuzz targets run briefly in `make test`; FUZZTIME lengthens them. A count of executions,
# not a duration: Go 1.26's fuzz coordinator can fail a duration run at its deadline with a
# bare "context deadline exceeded" and no input (go.dev/issue/75804, fixed in Go 1.27), as it
# did once in CI; a count has no deadline to race. 50000x is about 5–10 s here.
FUZZTIME ?= 50000x
# Builds and tests run without cgo: with it, pebble (under dragonboat, meta/raftlog) compiles
# the zstd C library (~40 s on a cold cache, once per build mode) and the binary links libc
# dynamically; without, everything is pure Go and the binary static. Only the race detector
# needs cgo (the race target sets it).
NOCGO    := CGO_ENABLED=0

.PHONY: all build run test unit race e2e fuzz soak powercut cluster-failover cluster-soak test-faults compat bench lint clean deb

all: build

build:
	@mkdir -p $(BIN)
	$(NOCGO) $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ringtail ./cmd/ringtail
	$(NOCGO) $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ringtail-perf ./cmd/ringtail-perf

run: build
	$(BIN)/ringtail serve --listen $(LISTEN) --data-dir $(DATA_DIR)

# test: unit tests, the same again under the race detector for the packages with concurrency,
# end-to-end tests against the real broker binary, then short fuzz runs of the frame decoder and
# the record-batch parser.
test: build unit race e2e fuzz

# Every package but the end-to-end suite, which `e2e` runs against the built binary.
UNIT_PKGS = $(shell $(GO) list ./... | grep -v /test/e2e)

# test/cluster starts real brokers: it gets the binary just built rather than building its own.
unit: build
	$(NOCGO) $(GO) vet ./...
	RINGTAIL_BIN=$(CURDIR)/$(BIN)/ringtail $(NOCGO) $(GO) test -count=1 $(UNIT_PKGS)

# meta/raftlog runs three-node Raft clusters in process; under the race detector its first
# build compiles pebble's zstd C code (about a minute on a cold cache), then its tests take
# about 20 s.
race:
	CGO_ENABLED=1 $(GO) test -race -count=1 ./engine/ ./wal/ ./vfs/... ./uring/ ./net/ ./group/ ./txn/ ./meta/... ./broker/ ./replication/...

# The e2e suite includes the short run (75 s of faults, about 90 s in all) of the
# replication fault test (TestFaults, see test-faults); E2E_FAULTS=0 leaves it out.
E2E_FAULTS ?= 1
e2e: build
	E2E_FAULTS=$(E2E_FAULTS) RINGTAIL_BIN=$(CURDIR)/$(BIN)/ringtail $(NOCGO) $(GO) test -count=1 -timeout 15m ./test/e2e/

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzValidate$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 200x ./engine/batch/
	$(GO) test -run '^$$' -fuzz '^FuzzParseRequest$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 200x ./net/

# soak: the kill -9 under acks=all load test for many more cycles than `make test` runs.
SOAK_CYCLES ?= 200
soak: build
	E2E_KILL9_CYCLES=$(SOAK_CYCLES) RINGTAIL_BIN=$(CURDIR)/$(BIN)/ringtail $(GO) test -count=1 -timeout 60m -run 'TestKill9UnderAcksAllLoad' -v ./test/e2e/

# powercut: the FUSE power-cut test (test/powercut/cutfs) for many more cuts than `make test`.
POWERCUT_ROUNDS ?= 40
powercut: build
	E2E_POWERCUT_ROUNDS=$(POWERCUT_ROUNDS) RINGTAIL_BIN=$(CURDIR)/$(BIN)/ringtail $(GO) test -count=1 -timeout 60m -run 'TestPowerCutKeepsAckedRecords' -v ./test/e2e/

# cluster-failover: three brokers with default settings; FAILOVER_ROUNDS rounds, each a kill -9
# of a partition leader that is not the controller, then of the controller; prints, per kill and
# as medians, the time from the kill to a new controller, to no partition led by the killed
# broker and to an acknowledged acks=all produce on each partition it led, and writes them to
# bench/results/<date>-<commit>-failover.txt. A measurement: it asserts no timing.
FAILOVER_ROUNDS ?= 10
cluster-failover: build
	@mkdir -p bench/results
	@commit=$$(git rev-parse --short HEAD 2>/dev/null || echo unknown); \
	if [ -n "$$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then commit="$$commit-dirty"; fi; \
	out=$(CURDIR)/bench/results/$$(date -u +%Y-%m-%d)-$$commit-failover.txt; \
	E2E_FAILOVER_ROUNDS=$(FAILOVER_ROUNDS) E2E_FAILOVER_OUT=$$out E2E_FAILOVER_COMMIT=$$commit \
	RINGTAIL_BIN=$(CURDIR)/$(BIN)/ringtail $(NOCGO) $(GO) test -count=1 -timeout 30m -run '^TestClusterFailover$$' -v ./test/e2e/

# cluster-soak: three brokers under a seeded random nemesis for CLUSTER_SOAK_SECONDS, one fault
# at a time (kill -9 of a broker or of the controller, SIGTERM, SIGSTOP past the session, a
# network cut when root, rarely a cold restart) while a client creates, grows, alters, deletes
# and produces; the metadata is checked after every recovery. Not in `make test` (too long for
# CI). The seed is printed; CLUSTER_SOAK_SEED=N replays a run's choices. The brokers' logs are
# kept on a failure (the test says where), or always in CLUSTER_SOAK_LOGS=DIR.
CLUSTER_SOAK_SECONDS ?= 180
CLUSTER_SOAK_SEED ?=
CLUSTER_SOAK_LOGS ?=
cluster-soak: build
	E2E_CLUSTER_SOAK_SECONDS=$(CLUSTER_SOAK_SECONDS) E2E_CLUSTER_SOAK_SEED=$(CLUSTER_SOAK_SEED) E2E_CLUSTER_SOAK_LOGS=$(CLUSTER_SOAK_LOGS) \
	RINGTAIL_BIN=$(CURDIR)/$(BIN)/ringtail $(NOCGO) $(GO) test -count=1 -timeout $$(( $(CLUSTER_SOAK_SECONDS) + 900 ))s -run '^TestClusterSoak$$' -v ./test/e2e/

# test-faults: the Jepsen-style fault test of replication (test/e2e/faults_*_test.go): three
# brokers, an RF=3 topic with min.insync.replicas=2, idempotent acks=all producers and polling
# consumers while a seeded nemesis brings one fault at a time for FAULTS_SECONDS (kill -9 of a
# leader, a follower, the controller; SIGSTOP past the session; a network cut as root; a power
# cut where FUSE mounts), then a checker of the history and of the replicas' logs. The seed is
# printed; FAULTS_SEED=N replays a run's choices. FAULTS_LOGS=DIR keeps the brokers' logs.
# FAULTS_ONLY=TEXT keeps the faults whose names contain TEXT (e.g. "WAL writes failing", the
# disk failure under a leader, which must stop the broker by itself).
FAULTS_ONLY ?=
FAULTS_SECONDS ?= 300
FAULTS_SEED ?=
FAULTS_LOGS ?=
test-faults: build
	E2E_FAULTS_SECONDS=$(FAULTS_SECONDS) E2E_FAULTS_SEED=$(FAULTS_SEED) E2E_FAULTS_LOGS=$(FAULTS_LOGS) E2E_FAULTS_ONLY=$(FAULTS_ONLY) \
	RINGTAIL_BIN=$(CURDIR)/$(BIN)/ringtail $(NOCGO) $(GO) test -count=1 -timeout $$(( $(FAULTS_SECONDS) + 900 ))s -run '^TestFaults$$' -v ./test/e2e/

# compat: kcat (librdkafka), confluent-kafka-python and kafkajs against a real broker process:
# produce/consume with every codec, admin APIs, consumer groups (compat/run.sh); then, against
# three brokers, the same clients and franz-go producing through a kill -9 of the partition
# leader (compat/cluster.sh). Both always run; the target fails if either does.
compat: build
	@rc=0; bash compat/run.sh || rc=1; bash compat/cluster.sh || rc=1; exit $$rc

# bench: Ringtail side by side with franz-go's kfake (see docs/benchmarks.md).
bench: build
	bash perf/bench.sh

# deb: bin/ringtail-<version>_<arch>.deb with the binary, the systemd units, the config file (a
# conffile) and /var/lib/ringtail for the ringtail user its postinst creates (deploy/nfpm.yaml).
# nfpm runs from the module proxy with `go run`: no binary download.
NFPM        := github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2
DEB_VERSION ?= 0.0.0+git$(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
DEB_ARCH    ?= $(shell $(GO) env GOARCH)
deb: build
	RINGTAIL_DEB_VERSION=$(DEB_VERSION) RINGTAIL_DEB_ARCH=$(DEB_ARCH) $(GO) run $(NFPM) package \
		--config deploy/nfpm.yaml --packager deb --target $(BIN)/

lint:
	@test -z "$$(gofmt -l . | tee /dev/stderr)" || (echo "gofmt: files above need formatting" && exit 1)
	$(GO) vet ./...

clean:
	rm -rf $(BIN)
