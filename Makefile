# The two commands a new machine needs: `make run` and `make test`.
GO ?= go
BIN := bin/orchestrator

.PHONY: run test build lint fuzz bench bench-http crash schedule-torture torture docker docker-check litestream-check clean

run:
	$(GO) run . serve

test: lint
	$(GO) test -race -count=1 ./...
	$(GO) test -run '^$$' -fuzz '^FuzzValidate$$' -fuzztime 10s ./engine/definition

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) .

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzValidate$$' -fuzztime 5m ./engine/definition

bench:
	scripts/bench

crash:
	$(GO) test -race -count=1 -run TestCrashRecovery -v .

schedule-torture:
	SCHEDULE_TORTURE_SECONDS=60 $(GO) test -count=1 -run TestScheduleTorture -v .

torture:
	scripts/torture

docker:
	docker build -t orchestrator-service .

docker-check:
	scripts/docker-check

litestream-check:
	scripts/litestream-check

clean:
	rm -rf bin orchestrator.db orchestrator.db-wal orchestrator.db-shm
