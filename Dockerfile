# Tierless receiver (edge-cloud), installed the way every Tierless machine is (docs/install.md):
# from the wheelhouse of `make wheelhouse`, with no index, so the build needs no network, no
# credentials and no CA bundle. The commands that build and run it are in docs/deploy-cloud.md;
# `make container-test` runs exactly those, against a real PostgreSQL.
#
# BASE_IMAGE: any image with python3 (3.11, as the wheelhouse) and its venv module, and
# groupadd/useradd: python:3.11-slim, or Debian bookworm with python3-venv (what
# deploy/container/base-image.sh builds where no registry is reachable).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
COPY dist/wheelhouse /wheelhouse
RUN python3 -m venv /opt/tierless \
    && /opt/tierless/bin/pip install --no-cache-dir --disable-pip-version-check --no-index \
        --find-links /wheelhouse 'tierless[cloud,postgres]' \
    && /opt/tierless/bin/edge-cloud --version

FROM ${BASE_IMAGE}
COPY --from=build /opt/tierless /opt/tierless
RUN groupadd --system --gid 10001 tierless \
    && useradd --system --uid 10001 --gid tierless --home-dir /data --shell /usr/sbin/nologin tierless \
    && mkdir -p /data && chown tierless:tierless /data && chmod 0700 /data
USER tierless:tierless
WORKDIR /data
ENV PATH=/opt/tierless/bin:$PATH \
    PYTHONUNBUFFERED=1 \
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
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/opt/tierless/bin/python", "-c", "import os, ssl, sys, urllib.request as u; e = os.environ; tls = bool(e.get('TIERLESS_TLS_CERT')); url = '%s://127.0.0.1:%s/healthz' % ('https' if tls else 'http', e.get('TIERLESS_PORT', '8080')); ctx = ssl._create_unverified_context() if tls else None; sys.exit(0 if u.urlopen(url, timeout=4, context=ctx).status == 200 else 1)"]
# SIGTERM: uvicorn finishes open requests and edge-cloud exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/opt/tierless/bin/edge-cloud"]
CMD ["serve"]
