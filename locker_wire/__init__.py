"""The node <-> central wire: request and command signatures, sealed secrets, shared shapes."""
