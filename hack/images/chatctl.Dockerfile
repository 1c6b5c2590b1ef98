# chatctl, from scratch: the command-line chatd client as one static binary,
# CA certificates (for wss:// endpoints) and a numeric non-root user. The Helm
# chart's `helm test` hook runs it against the installed cluster. The build
# context is prepared by hack/build-image.sh (binary + CA bundle).
FROM scratch
ARG VERSION=dev
# The git commit and the build time (RFC 3339), from hack/build-image.sh.
ARG REVISION
ARG CREATED
LABEL org.opencontainers.image.title="chatctl" \
      org.opencontainers.image.description="ringchat command-line WebSocket client" \
      org.opencontainers.image.source="https://github.com/ringchat/ringchat" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY chatctl /chatctl
USER 65532:65532
ENTRYPOINT ["/chatctl"]
