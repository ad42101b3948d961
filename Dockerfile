# kfadapter: the adapter under gunicorn (`kfadapter serve`), settings from the environment.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    KF_ADAPTER_PORT=5001 \
    KFADAPTER_DATA_DIR=/var/lib/kfadapter \
    KFADAPTER_LOG_FORMAT=json

WORKDIR /app

# Dependencies in their own layer: rebuilt only when requirements.txt changes.
COPY requirements.txt ./
RUN pip install -r requirements.txt

# The package itself (no dependency resolution: everything is pinned above).
COPY setup.py README.md ./
COPY kfadapter ./kfadapter
# A non-root user in group 0 owning the data dir, group-writable: the image also runs under
# an arbitrary uid in group 0 (OpenShift's restricted policy).
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --gid 0 --home-dir /var/lib/kfadapter --create-home kfadapter \
    && chmod -R g=u /var/lib/kfadapter

USER 10001
VOLUME ["/var/lib/kfadapter"]
EXPOSE 5001

# Gunicorn's heartbeat and metrics files go to /dev/shm (kfadapter/gunicorn_conf.py); uploads
# are staged in the temp dir (/tmp: mount an emptyDir there for a read-only root).
# SIGTERM stops gracefully within KFADAPTER_GRACEFUL_TIMEOUT (30 s): give
# `docker stop -t` / terminationGracePeriodSeconds a little more.
# The health check follows KF_ADAPTER_PORT; set it to match when KFADAPTER_BIND moves the port.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/liveness' % os.environ.get('KF_ADAPTER_PORT', '5001'), timeout=4)"]

ENTRYPOINT ["kfadapter", "serve"]
