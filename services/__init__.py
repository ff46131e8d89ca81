"""The platform's own runtime services: the gateway and the mock inference worker."""
