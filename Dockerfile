# The service image: `docker build -t orchestrator-service .` then
# `docker run -p 8084:8084 orchestrator-service`. The database lives in the
# /data volume; mount one to keep it across containers.

FROM golang:1.26 AS build
# Fetch a newer Go if go.mod asks for a later patch release than the image has.
ENV GOTOOLCHAIN=auto
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# The Makefile's build target: CGO_ENABLED=0, one static binary.
RUN make build && mkdir -p /out/data && cp bin/orchestrator /out/orchestrator

# distroless static: CA certificates and time zones, no shell, no package
# manager; the nonroot variant runs as uid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/orchestrator /orchestrator
COPY --from=build --chown=65532:65532 /out/data /data
ENV DATABASE_URL=/data/orchestrator.db \
    PORT=8084 \
    LOG_FORMAT=json \
    ORCHESTRATOR_URL=http://127.0.0.1:8084 \
    SHUTDOWN_GRACE=8s
USER 65532:65532
VOLUME ["/data"]
EXPOSE 8084
# No curl in the image: the binary probes itself (GET /health, exit 0 on 200).
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/orchestrator", "health", "--timeout", "3s"]
ENTRYPOINT ["/orchestrator"]
CMD ["serve"]
