"""The service behind ``probes serve``."""
