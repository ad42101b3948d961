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
RUN pip install --no-deps . \
    && useradd --system --uid 10001 --home-dir /var/lib/kfadapter --create-home kfadapter \
    && chown -R kfadapter /var/lib/kfadapter

USER 10001
VOLUME ["/var/lib/kfadapter"]
EXPOSE 5001

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/liveness' % os.environ.get('KF_ADAPTER_PORT', '5001'), timeout=4)"]

ENTRYPOINT ["kfadapter", "serve"]
