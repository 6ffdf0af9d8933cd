"""Sinks: the systems stored entries are delivered to, one module each."""
