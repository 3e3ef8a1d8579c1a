# jsedge in a container: the article's `nats` service, with jsedge in place of nats-server.
#
#   docker build -t jsedge .
#   docker compose up -d            (docker-compose.yml: ports 4222/8222/6222, docker/nats.conf, ./nats-data)
#
# Two stages: the first compiles the Cython twins into a wheel (it needs a C compiler), the second is
# the slim runtime with that wheel and its dependencies only (no compiler, no build tools), running
# as an unprivileged user with the JetStream store on the /data volume.

FROM python:3.11-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md ./
COPY jsedge ./jsedge
COPY systemd ./systemd
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl \
    && rm -rf /wheels \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin jsedge \
    && mkdir -p /data /etc/nats \
    && chown jsedge:jsedge /data
COPY docker/nats.conf /etc/nats/nats.conf
USER jsedge
VOLUME ["/data"]
# client connections, HTTP monitoring, cluster routes
EXPOSE 4222 8222 6222
# /healthz answers 200 {"status":"ok"} when the server (and JetStream) is ready
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8222/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["jsedge"]
CMD ["-c", "/etc/nats/nats.conf"]
