# ringchat — the two commands a newcomer needs are `make run` and `make test`.
# Everything else here is for contributors; `make help` lists it.

GO       ?= go
BIN      := $(CURDIR)/bin
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X github.com/ringchat/ringchat/chatd/version.Version=$(VERSION)
# How every binary is built, here and in the images (hack/build-image.sh runs
# the build targets below with BIN set to its build context): static,
# reproducible paths, version-stamped.
GO_BUILD  = CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)'
PKGS     := ./...
# Packages whose tests start real servers share two cores with the race
# detector; a generous timeout keeps a slow CI machine from flaking.
TEST_TIMEOUT ?= 15m

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z][a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

.PHONY: build
build: ## build bin/chatd (static, version-stamped)
	$(GO_BUILD) -o $(BIN)/chatd ./chatd/cmd/chatd

.PHONY: build-chatctl
build-chatctl: ## build bin/chatctl, the command-line client (static, version-stamped)
	$(GO_BUILD) -o $(BIN)/chatctl ./chatd/cmd/chatctl

.PHONY: run
run: build ## run one chatd on http://127.0.0.1:8080 with anonymous dev auth; chat history kept in .data/ across restarts; a server API key in .data/api-keys
	@mkdir -p $(CURDIR)/.data && [ -s $(CURDIR)/.data/api-keys ] || \
		{ umask 077; head -c 32 /dev/urandom | base64 > $(CURDIR)/.data/api-keys; }
	@echo "ringchat: open http://127.0.0.1:8080/ in a browser (Ctrl-C to stop; history is kept in .data/local); admin API, metrics and the server API (key in .data/api-keys) on http://127.0.0.1:9090/"
	$(BIN)/chatd --listen 127.0.0.1:8080 --admin-listen 127.0.0.1:9090 --allow-anonymous --node-name local --data-dir $(CURDIR)/.data/local --api-key-file $(CURDIR)/.data/api-keys

.PHONY: cluster
cluster: ## run a local 3-node cluster on loopback, nodes linked by mutual TLS with a throwaway CA (N=5 make cluster for more)
	hack/local-cluster.sh $${N:-3}

.PHONY: test
test: test-deps fmt-check vet ## run every test with the race detector (installs what it needs)
	@assets="$$(hack/envtest-assets.sh)" || exit 1; export KUBEBUILDER_ASSETS="$$(printf '%s\n' "$$assets" | tail -n 1)"; echo "KUBEBUILDER_ASSETS=$$KUBEBUILDER_ASSETS"; \
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)

.PHONY: test-deps
test-deps: ## install what the tests need (headless Chromium for the web page tests; Node.js, the pinned socket.io packages and python3-socketio for the Socket.IO tests)
	hack/ensure-chromium.sh
	hack/ensure-node.sh

.PHONY: fmt-check
fmt-check: ## fail when a Go file is not gofmt'ed
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

# staticcheck comes from hack/tools.sh (pinned there), like controller-gen
# below; its checks are the defaults (staticcheck.conf). A finding is fixed,
# or, where the code is right, silenced on its line with
# //lint:ignore CHECK and the reason.
STATICCHECK = sc="$$(hack/tools.sh staticcheck)" || exit 1; sc="$$(printf '%s\n' "$$sc" | tail -n 1)"; "$$sc"
.PHONY: vet
vet: ## go vet and staticcheck (the Docker, kind and fault suites too, which build only with their tags), shellcheck of the scripts, no binaries tracked
	hack/check-tracked-files.sh
	$(GO) vet $(PKGS)
	$(GO) vet -tags 'e2e partition' ./e2e/...
	$(GO) vet -tags faults ./chatd/faults/ ./chatd/eventstream/
	@$(STATICCHECK) $(PKGS) && echo "staticcheck $(PKGS)" && \
		"$$sc" -tags 'e2e partition' ./e2e/... && echo "staticcheck -tags 'e2e partition' ./e2e/..." && \
		"$$sc" -tags faults ./chatd/faults/ ./chatd/eventstream/ && echo "staticcheck -tags faults ./chatd/faults/ ./chatd/eventstream/"
	@command -v shellcheck >/dev/null 2>&1 || { echo "installing shellcheck (Debian)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends shellcheck >/dev/null; }
	shellcheck -x hack/*.sh hack/lib/*.sh .ci/run

.PHONY: fuzz
fuzz: ## fuzz the frame decoder for FUZZTIME (default 60s)
	$(GO) test ./chatd/protocol -run '^$$' -fuzz FuzzDecodeClientFrame -fuzztime $${FUZZTIME:-60s}

.PHONY: fuzz-socketio
fuzz-socketio: ## fuzz the Socket.IO packet decoder for FUZZTIME (default 60s)
	$(GO) test ./chatd/socketio -run '^$$' -fuzz FuzzDecodePacket -fuzztime $${FUZZTIME:-60s}

.PHONY: bench
bench: ## run the Go benchmarks (see docs/benchmarks.md)
	$(GO) test -run '^$$' -bench . -benchmem ./chatd/...

.PHONY: clean
clean: ## remove build output
	rm -rf $(BIN)

.PHONY: test-faults
test-faults: ## fault schedule: real chatd processes under SIGKILL, SIGTERM, SIGSTOP, adds and double kills (FAULT_SEED=… replays a run); the event stream through a minute-long backend outage
	$(GO) test -tags faults -race -count=1 -timeout $(TEST_TIMEOUT) -v ./chatd/faults/
	$(GO) test -tags faults -race -count=1 -timeout 10m -v -run 'ForAMinute' ./chatd/eventstream/

.PHONY: test-partition
test-partition: ## split-brain, docker pause and partition-and-heal tests with real isolation (Docker; installs and starts the engine if needed)
	hack/ensure-docker.sh
	image=$$(hack/build-image.sh chatd ringchat/chatd:partition-test) && \
		RINGCHAT_CHATD_IMAGE=$$image $(GO) test -tags partition -count=1 -timeout 10m -v ./e2e/partition/

## --- envtest and tools (hack/envtest-assets.sh, hack/tools.sh) ---
RINGCHAT_CACHE ?= $(HOME)/.cache/ringchat
.PHONY: envtest-assets tools
envtest-assets: ## build kube-apiserver and etcd for envtest from source (cached)
	hack/envtest-assets.sh
tools: ## install pinned controller-gen (and helm, kind, staticcheck) into the cache
	hack/tools.sh controller-gen

## --- operator (controllers/, config/) ---
# controller-gen comes from hack/tools.sh (pinned there, v0.23.0); the envtest
# API server and etcd from hack/envtest-assets.sh. Both print what they
# installed on stdout, the path last.
CONTROLLER_GEN = cg="$$(hack/tools.sh controller-gen)" || exit 1; cg="$$(printf '%s\n' "$$cg" | tail -n 1)"; "$$cg"
.PHONY: generate manifests test-operator build-operator
generate: ## regenerate the API's deepcopy code (controller-gen object)
	@$(CONTROLLER_GEN) object paths=./api/...

manifests: ## regenerate the CRD (config/crd/bases) and the operator's ClusterRole (config/rbac/role.yaml)
	@$(CONTROLLER_GEN) rbac:roleName=ringchat-operator crd webhook paths="./api/...;./controllers/..." \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac

test-operator: ## run the API and operator tests only (envtest: real kube-apiserver and etcd)
	@assets="$$(hack/envtest-assets.sh)" || exit 1; export KUBEBUILDER_ASSETS="$$(printf '%s\n' "$$assets" | tail -n 1)"; \
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./api/... ./controllers/...

build-operator: ## build bin/ringchat-operator (static, version-stamped)
	$(GO_BUILD) -o $(BIN)/ringchat-operator ./controllers/cmd/ringchat-operator

## --- images and Helm chart (hack/images/, charts/ringchat) ---
IMAGE_REPO ?= ringchat
.PHONY: docker-build chart-crd test-chart
# Each image is tagged $(VERSION) and also dev, the tag the chart (appVersion),
# config/manager and the CRD's default chatd image use, so that a local build
# is what `helm install charts/ringchat` or `kubectl apply -k config/default`
# runs.
docker-build: ## build the chatd, ringchat-operator and chatctl images, tagged $(VERSION) and dev (installs and starts Docker if needed)
	hack/ensure-docker.sh
	for image in chatd ringchat-operator chatctl; do \
		hack/build-image.sh $$image $(IMAGE_REPO)/$$image:$(VERSION) $(VERSION) && \
		docker tag $(IMAGE_REPO)/$$image:$(VERSION) $(IMAGE_REPO)/$$image:dev || exit 1; \
	done

chart-crd: ## copy the generated CRD and ClusterRole into the Helm chart (charts/ringchat/files)
	cp config/crd/bases/chat.ringchat.io_chatclusters.yaml charts/ringchat/files/chatclusters.yaml
	cp config/rbac/role.yaml charts/ringchat/files/role.yaml

test-chart: ## lint, render and check the Helm chart (installs the pinned helm)
	$(GO) test -count=1 ./charts/...

## --- end-to-end on kind (hack/e2e.sh; docs/testing.md) ---
.PHONY: e2e kind-node-image
e2e: ## kind cluster + chart + ChatCluster + the Go e2e suite (builds everything offline; E2E_KEEP=1 keeps the cluster)
	hack/e2e.sh
kind-node-image: ## build (or find) the offline kind node image
	hack/ensure-docker.sh
	hack/kind-node-image.sh
