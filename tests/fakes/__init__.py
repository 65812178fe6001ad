"""Test doubles that speak the real APIs: pynvml, the TPU runtime gRPC service, a JAX app's metrics."""
