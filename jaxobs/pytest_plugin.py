"""pytest plugin (entry point ``pytest11: jaxobs``): JAX correctness guards."""
