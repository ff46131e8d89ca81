"""The Pulumi program: configuration models, composition, offline preview and the platformctl CLI."""
