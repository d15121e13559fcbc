"""Prometheus metrics of the inference runtime, exposed on ``GET /metrics``."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
MODEL_LABELS = ("project", "model", "version", "backend")

REQUESTS = Counter(
    "tl_inference_requests_total", "Inference requests by model and protocol.", [*MODEL_LABELS, "protocol", "outcome"]
)
ITEMS = Counter("tl_inference_items_total", "Items (images or texts) predicted.", MODEL_LABELS)
LATENCY = Histogram(
    "tl_inference_latency_seconds",
    "Inference latency: queueing, batching and the model call.",
    MODEL_LABELS,
    buckets=LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "tl_inference_batch_size",
    "Items per model call after dynamic batching.",
    MODEL_LABELS,
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
CACHE_BYTES = Gauge("tl_model_cache_bytes", "Estimated bytes held by loaded models.")
CACHE_MODELS = Gauge("tl_model_cache_models", "Models loaded in the cache.")
MODEL_LOADS = Counter("tl_model_loads_total", "Models loaded into the cache.")
MODEL_EVICTIONS = Counter("tl_model_evictions_total", "Models evicted from the cache to stay within its budget.")
