# One Dockerfile, one stage per service: the base layer (Python, the pinned
# dependencies and the shared `common` package) is built once and shared by
# every image, and no service carries a copy of another's code.
#
#   docker build --target consumer --build-arg SERVICE=consumer_two \
#       --build-arg MODULE=insertion -t consumer_two .
#
# PYTHON_IMAGE defaults to the official slim image; `make up` passes a local
# stand-in only on machines that cannot pull it (see offline/README.md).
ARG PYTHON_IMAGE=python:3.12-slim

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin app
WORKDIR /app
COPY common/requirements.txt common/requirements.txt
RUN pip install -r common/requirements.txt
COPY common/ common/

FROM base AS migrate
COPY db/ db/
USER app
CMD ["python", "-m", "db.migrate"]

# The operator's one-shot jobs: the topology (common/declare.py) and the dead-letter tools.
FROM base AS operator
USER app
CMD ["python", "-m", "common.declare"]

FROM base AS producer
COPY producer/requirements.txt producer/requirements.txt
RUN pip install -r producer/requirements.txt
COPY producer/ producer/
USER app
# prometheus_client's multiprocess mode: the gunicorn workers' figures, added up at /metrics.
ENV PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus
EXPOSE 5000
HEALTHCHECK --interval=5s --timeout=4s --start-period=20s --retries=3 \
    CMD ["python", "-S", "-m", "common.probe", "http://127.0.0.1:5000/readyz"]
CMD ["gunicorn", "--config", "producer/gunicorn.conf.py", "producer.producer:create_app()"]

# Every consumer: the shared base plus its own folder (build argument
# SERVICE) and the module that runs it (MODULE). A new consumer needs no new
# stage here, only a folder, a handler file and a compose entry.
FROM base AS consumer
ARG SERVICE
ARG MODULE
RUN test -n "$SERVICE" -a -n "$MODULE" \
    || (echo "build with --build-arg SERVICE=<folder> --build-arg MODULE=<file without .py>" >&2; exit 1)
COPY ${SERVICE}/ ${SERVICE}/
USER app
ENV CONSUMER_MODULE=${SERVICE}.${MODULE}
# exec: python becomes PID 1 and receives SIGTERM itself.
CMD ["sh", "-c", "exec python -m \"$CONSUMER_MODULE\""]
# Each consumer serves only its Prometheus metrics (CONSUMER_METRICS_PORT).
EXPOSE 9100
# Healthy while the consumer loop touches its file (common/probe.py's ALIVE_FILE, at least
# every couple of seconds while it holds a consuming channel): at most 15 s old. In sh, not
# Python: measured in this image, a Python probe costs 114 ms of CPU (the root is read-only,
# so nothing is cached compiled) and this one 6 ms, every 5 s in each consumer.
HEALTHCHECK --interval=5s --timeout=4s --start-period=30s --retries=3 \
    CMD ["sh", "-c", "f=/tmp/consumer.alive; [ -f \"$f\" ] && [ $(( $(date +%s) - $(stat -c %Y \"$f\") )) -lt 15 ]"]
