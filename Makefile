# Generated code is committed; `make proto` reproduces it exactly.
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.5.1
GOBIN ?= $(shell go env GOPATH)/bin
RAFT_PROTO_DIR = $(shell go list -m -f '{{.Dir}}' go.etcd.io/raft/v3)/raftpb

.PHONY: sim proto test test-k8s check-deploy vet fmt bench build lean

proto:
	@command -v protoc >/dev/null || { echo "protoc not found: apt-get install protobuf-compiler"; exit 1; }
	go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	PATH="$(GOBIN):$$PATH" protoc -I proto -I $(RAFT_PROTO_DIR) \
		--go_out=proto --go_opt=paths=source_relative \
		--go-grpc_out=proto --go-grpc_opt=paths=source_relative \
		proto/raftelect/v1/peer.proto proto/raftelect/v1/node.proto
	PATH="$(GOBIN):$$PATH" protoc -I k8s/proto \
		--go_out=k8s/proto --go_opt=paths=source_relative \
		--go-grpc_out=k8s/proto --go-grpc_opt=paths=source_relative \
		clustercreds/v1/clustercreds.proto

build:
	go build ./...

# The executable that runs a node, as a deployment should build it:
# - lean leaves out the chaos, bench and demo commands (and the chaos and
#   checker packages they bring);
# - grpcnotrace leaves out gRPC's golang.org/x/net/trace, which nothing here
#   enables, and html/template with it: while text/template's executor is
#   linked (it calls methods by name), the linker keeps every exported
#   method of every type in use, 3.8 MB of executable here;
# - CGO_ENABLED=0: a static executable, no libc or ld.so mapped;
# - -s -w drop the symbol table and DWARF, which are never mapped: this saves
#   disk and image size only (profiles still symbolise from the runtime's
#   own tables).
# docs/benchmarks.md ("Idle memory") has the figures. The image uses the
# same tags.
LEAN_TAGS := lean,grpcnotrace
lean:
	CGO_ENABLED=0 go build -tags $(LEAN_TAGS) -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o raftelect ./cmd/raftelect

test:
	go test -race -timeout 15m ./...
	$(K8S_TOOLS) && cd k8s && $(K8S_TEST_ENV) go test -race ./...
	cd examples/controller-runtime && go vet ./... && go test -race ./...

# The k8s module (client-go adapter, Lease mirror, leader credentials,
# manifest, chart and alert rule checks, the three-cluster test against real
# control planes) and the controller-runtime example, each a nested module
# so that the core library never pulls client-go. The control planes'
# binaries are built once into a cache (k8s-assets); with them present the
# tests that need them must run, not skip.
K8S_TOOLS = assets=$$(tools/k8s-assets/build.sh) && helm=$$(tools/k8s-assets/build.sh helm)
K8S_TEST_ENV = KUBEBUILDER_ASSETS=$$assets RAFTELECT_REQUIRE_CONTROL_PLANES=1 RAFTELECT_REQUIRE_IMAGE=1 \
	RAFTELECT_HELM=$$helm RAFTELECT_REQUIRE_HELM=1
test-k8s:
	$(K8S_TOOLS) && cd k8s && go vet ./... && $(K8S_TEST_ENV) go test -race ./...
	cd examples/controller-runtime && go vet ./... && go test -race ./...

# Manifests decoded strictly with client-go's scheme and checked for wiring
# (ports, probes, volumes, node.yaml); alert rules with promtool (check rules
# and the rule unit tests). make test runs these too.
check-deploy:
	cd k8s && go test -count=1 -v ./deploy/

vet:
	go vet ./...

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# 100,000 schedules of the deterministic core under simulated faults, one
# process per core (tools/sim.sh); `make test` runs a few hundred. Then the
# known bugs, each put back and caught, without the race detector (under it
# `make test` skips them: the simulator is one goroutine, and -race makes
# their thousands of schedules take minutes).
SIM_SCHEDULES ?= 100000
sim:
	tools/sim.sh $(SIM_SCHEDULES)
	go test -count=1 -run '^TestSimulator_CatchesKnownBugs$$' ./internal/sim

bench:
	go test -run '^$$' -bench . -benchmem ./transport/ ./storage/

# The image: a static binary FROM scratch, non-root, built offline with
# podman (or buildah: BUILDER=buildah). Tagged with deploy/VERSION, which the
# manifests and the chart name.
VERSION ?= $(shell cat deploy/VERSION)
IMAGE   ?= ghcr.io/raftelect/raftelect:$(VERSION)
BUILDER ?= podman
IMAGE_CONTEXT ?= $(shell go env GOCACHE)/../raftelect-image

.PHONY: image k8s-assets
# (On hosts with hybrid cgroups, run the image with podman --runtime runc.)
image:
	mkdir -p $(IMAGE_CONTEXT)
	CGO_ENABLED=0 go build -tags $(LEAN_TAGS) -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o $(IMAGE_CONTEXT)/raftelect ./cmd/raftelect
	$(BUILDER) build --build-arg VERSION=$(VERSION) -f Dockerfile -t $(IMAGE) $(IMAGE_CONTEXT)

# etcd, kube-apiserver and kubectl for the k8s module's control-plane tests,
# built once into a versioned cache (tools/k8s-assets/build.sh).
k8s-assets:
	@tools/k8s-assets/build.sh
