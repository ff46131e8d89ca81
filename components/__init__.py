"""Pulumi ComponentResources of the platform, one per module."""
