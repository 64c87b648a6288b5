"""Telemetry: a sampler and a registry of backends (NVML and look-alikes, AMD SMI, vendors' SMIs and bindings,
RAPL/psutil, Ray nodes); each says what it can read."""
