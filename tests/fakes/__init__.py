"""Fake provider servers speaking the vendors' wire formats on 127.0.0.1, for driving the real SDKs."""
