# ringchat-operator, from scratch: the ChatCluster controller manager as one
# static binary, CA certificates (for the API server's TLS when it is not the
# in-cluster CA) and a numeric non-root user. No base image is pulled; the
# build context is prepared by hack/build-image.sh (binary + CA bundle).
FROM scratch
ARG VERSION=dev
# The git commit and the build time (RFC 3339), from hack/build-image.sh.
ARG REVISION
ARG CREATED
LABEL org.opencontainers.image.title="ringchat-operator" \
      org.opencontainers.image.description="ringchat Kubernetes operator (ChatCluster controller)" \
      org.opencontainers.image.source="https://github.com/ringchat/ringchat" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY ringchat-operator /manager
USER 65532:65532
# metrics, health probes
EXPOSE 8080 8081
ENTRYPOINT ["/manager"]
