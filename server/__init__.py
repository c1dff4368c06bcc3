"""The aigen gateway server (grpc.aio)."""
