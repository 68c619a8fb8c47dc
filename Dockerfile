# The safety hub: python:3.11-slim, dependencies locked by uv.lock, runs as a non-root user.
#   docker build -t safety-hub .       (docker-compose.yml builds it as service "hub")
FROM python:3.11-slim

RUN pip install --no-cache-dir "uv>=0.5,<1"

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1

WORKDIR /app
# dependencies first: a code change does not reinstall them
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project

COPY hub ./hub
COPY simulators ./simulators
COPY device_profiles ./device_profiles
COPY sites ./sites
RUN uv sync --frozen --no-dev --no-editable

RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin hub \
    && mkdir -p /data \
    && chown hub:hub /data
USER hub

# installed non-editable, so the data directories are named explicitly
ENV HUB_DATA_DIR=/data \
    HUB_PROFILES_DIR=/app/device_profiles \
    HUB_RULES_DIR=/app/device_profiles/rules \
    HUB_SITES_DIR=/app/sites \
    HUB_API_HOST=0.0.0.0 \
    HUB_API_PORT=8080
VOLUME ["/data"]
EXPOSE 8080

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=4 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/api/health', timeout=4)"]

CMD ["hub", "run"]
