"""Image providers. Importing this package registers every built-in provider."""

from aigen.server.providers import bfl, gemini, local, openai_images, replicate  # noqa: F401
