# vk-eci: the daemon image. Multi-stage: build a wheel, then install only runtime dependencies.
# Build:  docker build -t vk-eci:0.1.0 .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY vk_provider ./vk_provider
RUN pip install --no-cache-dir build && python -m build --wheel --outdir /dist

FROM python:3.11-slim
# Run as an unprivileged user; the root filesystem can be mounted read-only (certificates go to /tmp).
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin vk
COPY --from=build /dist/*.whl /tmp/
RUN pip install --no-cache-dir /tmp/*.whl && rm /tmp/*.whl
USER 10001
# Two malloc arenas, not eight per core: the ECI SDK's thread pool would otherwise grow arenas that keep
# freed memory (vk_provider/heap.py, which sets the same cap when this variable is absent).
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 MALLOC_ARENA_MAX=2
EXPOSE 10250 10255
ENTRYPOINT ["vk-provider", "run"]
