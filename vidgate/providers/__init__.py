"""Upstream adapters: one module per provider, registered through providers/registry.py."""
