# metalignd in a container: built with the same scripts CI runs (tools/install-deps.sh,
# tools/build.sh), served by a non-root user, health-checked on /readyz.
#   docker build -t metalignd .
#   docker run --rm -p 8080:8080 metalignd                       # the synthetic demo bundle
#   docker run --rm -p 8080:8080 -v /data/things:/data:ro metalignd \
#       --config /data/things.json --listen 0.0.0.0:8080         # your own files
# BASE may name any Debian bookworm image: tools/test_container.sh makes one with debootstrap
# (no registry needed) and builds with podman, which keeps the HEALTHCHECK only with
# `--format docker` (OCI image configs have no health check).

ARG BASE=debian:bookworm-slim

FROM ${BASE} AS build
WORKDIR /src
COPY tools/install-deps.sh tools/
RUN tools/install-deps.sh build && rm -rf /var/lib/apt/lists/*
COPY . .
RUN tools/build.sh build -Dprefix=/opt/metalignd && meson install -C build

FROM ${BASE}
COPY tools/install-deps.sh /tmp/install-deps.sh
RUN /tmp/install-deps.sh runtime && rm -rf /var/lib/apt/lists/* /tmp/install-deps.sh \
 && useradd --system --home-dir /var/lib/metalignd --create-home --shell /usr/sbin/nologin metalignd \
 && mkdir -p /var/cache/metalignd && chown metalignd: /var/cache/metalignd
COPY --from=build /opt/metalignd /opt/metalignd
COPY config /opt/metalignd/config
COPY data/demo /opt/metalignd/data/demo
USER metalignd
WORKDIR /var/lib/metalignd
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/readyz || exit 1
ENTRYPOINT ["/opt/metalignd/bin/metalignd"]
CMD ["--config", "/opt/metalignd/config/demo.json", "--listen", "0.0.0.0:8080", \
     "--cache-dir", "/var/cache/metalignd"]
