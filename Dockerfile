# The outbox image: the CLI (migrate, relay, api, ...) on a slim Python.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY outbox ./outbox
COPY relay ./relay
COPY sql ./sql
RUN pip install --no-cache-dir . && useradd --system outbox
USER outbox
CMD ["outbox", "relay"]
