# chatd, from scratch: one static binary, CA certificates, a numeric
# non-root user. No base image is pulled. The build context is prepared by
# hack/build-image.sh (binary + CA bundle), never the repository itself.
FROM scratch
ARG VERSION=dev
# The git commit and the build time (RFC 3339), from hack/build-image.sh.
ARG REVISION
ARG CREATED
LABEL org.opencontainers.image.title="chatd" \
      org.opencontainers.image.description="ringchat WebSocket chat server" \
      org.opencontainers.image.source="https://github.com/ringchat/ringchat" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY chatd /chatd
USER 65532:65532
EXPOSE 8080 7946 7946/udp 7947
ENTRYPOINT ["/chatd"]
