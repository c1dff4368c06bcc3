"""Image providers. Importing this package registers every built-in provider."""

from aigen.server.providers import gemini, local, openai_images  # noqa: F401
