# The raftelect image: one static binary, nothing else, running as a
# non-root user. It builds offline (no base image to pull): the context is a
# directory holding the binary, built first with CGO_ENABLED=0, which is
# what `make image` does:
#
#   CGO_ENABLED=0 go build -tags lean,grpcnotrace -trimpath \
#       -ldflags "-s -w -X main.version=$(cat deploy/VERSION)" -o ctx/raftelect ./cmd/raftelect
#
# (-tags lean,grpcnotrace: the node-only executable, without demo, chaos and
# bench; docs/operations.md.)
#   podman build -f Dockerfile -t ghcr.io/raftelect/raftelect:$(cat deploy/VERSION) ctx
#
# The manifests in deploy/ name that tag; deploy/VERSION is the one place
# the version is written.
FROM scratch
ARG VERSION=unknown
LABEL org.opencontainers.image.title="raftelect" \
      org.opencontainers.image.description="Leader election among replicas in different regions, over raft with mutual TLS" \
      org.opencontainers.image.source="https://github.com/raftelect/raftelect" \
      org.opencontainers.image.version="${VERSION}"
COPY raftelect /usr/local/bin/raftelect
# The distroless "nonroot" uid; the manifests' securityContext uses it too.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/raftelect"]
