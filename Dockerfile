# Countersign listener image: a static binary on a distroless base, run as
# non-root (UID 65532) with a read-only root filesystem (see deploy/helm).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/listener ./cmd/listener

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/listener /usr/local/bin/listener
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/listener"]
CMD ["serve", "--config", "/etc/countersign/config.yaml"]
