"""Image providers. Importing this package registers every built-in provider."""
