# Tierless receiver (edge-cloud). Build: docker build -t tierless-cloud .
# Run: see docs/deploy-cloud.md. Configuration is by environment variables (cloud/cli.py).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml ./
COPY wire ./wire
COPY cloud ./cloud
RUN pip install --no-cache-dir --prefix=/install ".[cloud,postgres]"

FROM python:3.11-slim
COPY --from=build /install /usr/local
RUN groupadd --system --gid 10001 tierless \
    && useradd --system --uid 10001 --gid tierless --home-dir /data --shell /usr/sbin/nologin tierless \
    && mkdir -p /data && chown tierless:tierless /data && chmod 0700 /data
USER tierless:tierless
WORKDIR /data
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TIERLESS_DB=sqlite:////data/tierless-cloud.db \
    TIERLESS_HOST=0.0.0.0 \
    TIERLESS_PORT=8080 \
    TIERLESS_TOKEN_DIR=/data
# TIERLESS_PUBLIC_URL must be set to the URL gateways use (https://ingest.example.com).
# Plain HTTP inside the container needs TIERLESS_ALLOW_INSECURE_HTTP=1 (TLS at the proxy), or
# mount a certificate and set TIERLESS_TLS_CERT / TIERLESS_TLS_KEY.
EXPOSE 8080
VOLUME ["/data"]
# Loopback check: with TLS on, the certificate names the public host, not 127.0.0.1.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, ssl, sys, urllib.request as u; e = os.environ; tls = bool(e.get('TIERLESS_TLS_CERT')); url = '%s://127.0.0.1:%s/healthz' % ('https' if tls else 'http', e.get('TIERLESS_PORT', '8080')); ctx = ssl._create_unverified_context() if tls else None; sys.exit(0 if u.urlopen(url, timeout=4, context=ctx).status == 200 else 1)"]
ENTRYPOINT ["edge-cloud"]
CMD ["serve"]
