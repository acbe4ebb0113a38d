# Binaries that take long to build (the control plane, controller-gen) are
# cached outside the clone, versioned, so every clone on a machine shares them.
CACHE ?= $(or $(SANDBOXSET_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/sandboxset)
export SANDBOXSET_CACHE := $(CACHE)
CONTROLLER_TOOLS_VERSION ?= v0.23.0
CONTROLLER_GEN ?= $(CACHE)/bin/controller-gen-$(CONTROLLER_TOOLS_VERSION)
IMG ?= sandboxset-manager:dev

TEST_TIMEOUT ?= 40m
# Extra go test flags, e.g. TEST_FLAGS='-run TestControllers'.
TEST_FLAGS ?=

SHELL = /usr/bin/env bash -o pipefail
.SHELLFLAGS = -ec

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate the CRD, RBAC and webhook manifests from markers.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd:generateEmbeddedObjectMeta=true webhook paths="./..." \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac output:webhook:artifacts:config=config/webhook
	go run ./cmd/crdtrim config/crd/bases/*.yaml

.PHONY: generate
generate: controller-gen ## Generate DeepCopy methods from markers.
	$(CONTROLLER_GEN) object paths="./api/..."

.PHONY: verify-generated
verify-generated: controller-gen ## Fail if the committed CRD, RBAC, webhook or DeepCopy code is stale.
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(CONTROLLER_GEN) object paths="./api/..." output:object:artifacts:config="$$tmp/api",code="$$tmp/api"; \
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd:generateEmbeddedObjectMeta=true webhook paths="./..." \
		output:crd:artifacts:config="$$tmp/crd" output:rbac:artifacts:config="$$tmp/rbac" output:webhook:artifacts:config="$$tmp/webhook"; \
	go run ./cmd/crdtrim "$$tmp"/crd/*.yaml; \
	stale=0; \
	diff -u api/v1alpha1/zz_generated.deepcopy.go "$$tmp/api/zz_generated.deepcopy.go" || stale=1; \
	for f in "$$tmp"/crd/*; do diff -u "config/crd/bases/$$(basename "$$f")" "$$f" || stale=1; done; \
	for d in rbac webhook; do [ -d "$$tmp/$$d" ] || continue; for f in "$$tmp/$$d"/*; do diff -u "config/$$d/$$(basename "$$f")" "$$f" || stale=1; done; done; \
	if [ $$stale = 1 ]; then echo "generated files are stale: run 'make generate manifests' and commit the result" >&2; exit 1; fi

.PHONY: fmt
fmt: ## Run go fmt.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

# Fuzzing is bounded by executions, not time: Go 1.26's fuzz coordinator can fail a target with
# "context deadline exceeded" when a -fuzztime duration ends (go.dev/issue/75804, fixed in Go 1.27).
FUZZ_EXECS ?= 10000

.PHONY: test
test: verify-generated vet cluster-tools fuzz ## Run every suite: unit, fuzz, envtest (real kube-apiserver), e2e (local kwok cluster), and the install suite (config/default with cert-manager).
	KUBEBUILDER_ASSETS="$$(test/tools/build.sh --dir)" GINKGO_NO_COLOR=TRUE go test $$(go list ./... | grep -v -e /test/install -e /test/certmanager) -count=1 -timeout $(TEST_TIMEOUT) -v $(TEST_FLAGS)
	@# cert-manager's suites run after the others: the install suite runs a second local cluster, and linking
	@# cert-manager's controllers takes both cores for a while: once, beside the e2e suite, its API server stalled.
	KUBEBUILDER_ASSETS="$$(test/tools/build.sh --dir)" GINKGO_NO_COLOR=TRUE go test ./test/certmanager ./test/install -count=1 -timeout $(TEST_TIMEOUT) -v $(TEST_FLAGS)

.PHONY: fuzz
fuzz: ## Fuzz SandboxSet validation and the claim webhook's decision for FUZZ_EXECS executions each (seed corpus in webhooks/testdata/fuzz).
	go test ./webhooks -run '^$$' -fuzz '^FuzzValidateSandboxSet$$' -fuzztime $(FUZZ_EXECS)x
	go test ./webhooks -run '^$$' -fuzz '^FuzzAdmitPoolPodUpdate$$' -fuzztime $(FUZZ_EXECS)x

# Benchmark flags, e.g. BENCH_FLAGS='-profile noqps', '-quick' or '-long'.
BENCH_FLAGS ?=

.PHONY: bench
bench: ## Benchmark the SandboxSet against a ReplicaSet warm pool on a local cluster of its own (docs/benchmark.md); fails on a double claim or an extra Pod, never on speed.
	go run ./test/bench $(BENCH_FLAGS)

.PHONY: bench-autoscale
bench-autoscale: ## Replay claim traces (steady, diurnal, bursts, idle night) against a mean-sized, a peak-sized and an autoscaled pool on a local cluster of its own (about 11 minutes; BENCH_FLAGS=-trace-quick for about 4); fails on a double claim, never on speed.
	go run ./test/bench -scenarios none -trace-replay $(BENCH_FLAGS)

##@ Build

.PHONY: build
build: ## Build the manager and the kubectl-sbs CLI.
	go build -o bin/manager ./cmd/manager
	go build -o bin/kubectl-sbs ./cmd/kubectl-sbs

.PHONY: install-plugin
install-plugin: ## Install kubectl-sbs with go install (into $GOPATH/bin), so that `kubectl sbs` works if that is on your PATH.
	go install ./cmd/kubectl-sbs
	@echo "installed $$(go env GOPATH)/bin/kubectl-sbs; kubectl sbs needs that directory on your PATH"

.PHONY: run
run: manifests generate ## Run the controller alone against your kubeconfig's cluster, with no admission webhooks: claims are not atomic and agents are held to no rule. For development (make install first).
	go run ./cmd/manager --leader-elect=false --enable-webhooks=false --metrics-bind-address=127.0.0.1:9080 --health-probe-bind-address=127.0.0.1:9081

.PHONY: up
up: ## Run the whole system locally: a control plane, simulated nodes, the operator and a demo pool of 10 warm sandboxes.
	test/local/demo.sh

.PHONY: down
down: ## Stop the local system and remove its state.
	test/local/cluster.sh down

.PHONY: install
install: manifests ## Install the CRD into the cluster in your kubeconfig.
	kubectl apply --server-side -k config/crd

.PHONY: build-installer
build-installer: manifests ## Render the whole operator into one file, dist/install.yaml (needs cert-manager in the cluster).
	mkdir -p dist
	kubectl kustomize config/default > dist/install.yaml

.PHONY: docker-build
docker-build: ## Build the manager image with the Dockerfile (needs a container engine).
	docker build -t $(IMG) .

.PHONY: image
image: ## Build the manager image without a container engine, as bin/manager-image.tar (docker load, podman load, kind load image-archive or crane push read it).
	CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags=-s -o bin/manager-linux ./cmd/manager
	go run ./cmd/manager-image -binary bin/manager-linux -tag $(IMG) -o bin/manager-image.tar

##@ Tools

.PHONY: envtest
envtest: ## Build kube-apiserver and etcd for envtest into the cache (about 10 minutes the first time).
	test/tools/build.sh envtest

.PHONY: cluster-tools
cluster-tools: ## Also build kube-scheduler, kube-controller-manager and kwok for the local cluster (a few minutes more the first time), and fetch promtool from Debian's prometheus package and the Python agent example's client from Debian's python3-kubernetes.
	test/tools/build.sh envtest cluster promtool python-client

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN)
$(CONTROLLER_GEN):
	mkdir -p $(CACHE)/bin/tmp-controller-gen
	GOBIN=$(CACHE)/bin/tmp-controller-gen go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
	mv $(CACHE)/bin/tmp-controller-gen/controller-gen $@
