# syntax=docker/dockerfile:1
#
# eventhook: a static, non-root image with only the binary, a default configuration and two empty directories.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t ghcr.io/flovyn/eventhook:dev .
#
# Layout of the image:
#   /eventhook                      the binary (static: CGO_ENABLED=0; no libc, no shell in the image)
#   /etc/eventhook/config.yaml      the configuration read by default (CMD below). In Kubernetes a ConfigMap is
#                                   mounted over /etc/eventhook (deploy/k8s/workflow-worker.yaml); elsewhere mount your
#                                   own file there or pass `-config <path>` as the command.
#   /var/run/eventhook/             the Unix socket directory: eventhook.sock is created here. Share it with the
#                                   workflow container as a volume (an emptyDir in Kubernetes, `-v` with docker).
#   /var/lib/eventhook/             the data directory: JetStream files of the embedded NATS server (development only;
#                                   with an external cluster nothing is written here). Mount a volume to keep them.
# Both directories belong to the runtime user 65532:65532 (distroless "nonroot"), so the image also runs with a
# read-only root filesystem when they are volumes.
#
# Port 8787 is the HTTP API (publishing, Server-Sent Events, /healthz, /readyz, /metrics). The default configuration
# listens on 127.0.0.1 only; listening on another address needs auth tokens (see config.yaml and deploy/k8s).

ARG GO_VERSION=1.26

# ---- build: a static binary ----------------------------------------------------------------------------------------
# golang:1.26 matches the go line of go.mod (go 1.26.8; an older 1.26.x image fetches that toolchain by itself).
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# The same command line is run by deploy/k8s/manifests_test.go (TestDockerBuildCommand), which checks that the binary
# is static and prints its version.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X github.com/flovyn/eventhook/sidecar.Version=${VERSION}" -o /out/eventhook .
# Empty directories, copied into the runtime image owned by the non-root user (the runtime image has no shell to
# mkdir with).
RUN mkdir -p /out/empty

# ---- runtime: distroless static, non-root ----------------------------------------------------------------------------
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="eventhook" \
      org.opencontainers.image.description="NATS JetStream event sidecar for the Flovyn workflow platform" \
      org.opencontainers.image.source="https://github.com/flovyn/eventhook" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/eventhook /eventhook
COPY --from=build --chown=65532:65532 /out/empty /var/run/eventhook
COPY --from=build --chown=65532:65532 /out/empty /var/lib/eventhook
# The default configuration: development settings with container paths (embedded NATS storing under
# /var/lib/eventhook, the socket in /var/run/eventhook, HTTP on 127.0.0.1:8787). Production mounts its own file here.
COPY <<EOF /etc/eventhook/config.yaml
# eventhook default configuration of the container image. Mount your own over /etc/eventhook/config.yaml
# (keys: see config.yaml in the repository); production points nats.urls at the cluster.
http:
  listen: "127.0.0.1:8787"
  unix_socket: /var/run/eventhook/eventhook.sock
  unix_socket_mode: "0660"
backend: jetstream
nats:
  embedded: true
  embedded_listen: ""
  store_dir: /var/lib/eventhook
log:
  level: info
  format: json
EOF
USER 65532:65532
EXPOSE 8787
# `eventhook serve` is the entrypoint; the command only names the configuration, so that
# `docker run IMAGE -config /other.yaml` works.
ENTRYPOINT ["/eventhook", "serve"]
CMD ["-config", "/etc/eventhook/config.yaml"]
