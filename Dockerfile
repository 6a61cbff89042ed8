# triggerstream: the command line and the stream worker, for docker-compose.yml.
#
#   docker build -t triggerstream .
#   docker run --rm -v "$PWD/examples:/rules:ro" triggerstream rules check /rules/rules.yaml
#
# The package is built from this source tree: pyproject.toml, the README its metadata
# reads, src/, and what the wheel carries besides (topics/, examples/rules.yaml). Every
# dependency has a wheel for Python 3.11 on Linux: no compiler needed.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /build
COPY pyproject.toml README.md ./
COPY src ./src
COPY topics ./topics
COPY examples ./examples
RUN pip install . \
 && rm -rf /build

# An unprivileged user owns the state directory. It is a volume: RocksDB state survives
# a new container, and is rebuilt from the changelog topics when the volume is new.
RUN groupadd --system --gid 10001 triggerstream \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/triggerstream \
      --shell /usr/sbin/nologin triggerstream \
 && mkdir -p /var/lib/triggerstream/data \
 && chown -R triggerstream:triggerstream /var/lib/triggerstream
ENV TRIGGERSTREAM_DATA_DIR=/var/lib/triggerstream/data
VOLUME ["/var/lib/triggerstream/data"]
WORKDIR /var/lib/triggerstream
# By number, so that a runtime can tell it is not root (Kubernetes' runAsNonRoot).
USER 10001:10001

# Metrics (/metrics) and health (/healthz, /readyz) of the worker.
EXPOSE 6066
# Slim images have no curl: Python asks /healthz. Only `worker` serves it; compose turns
# the check off for one-shot commands.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('TRIGGERSTREAM_WEB_PORT', '6066') + '/healthz', timeout=4)"]

ENTRYPOINT ["triggerstream"]
CMD ["--help"]
