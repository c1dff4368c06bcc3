"""gRPC servicers: thin adapters from the contracts to the use cases."""
