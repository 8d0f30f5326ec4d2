"""The node's use cases, one module each; the kiosk's endpoints and the sync loop both call them.

`facade.LockerFlows` is the one object those two doors hold. Each flow takes plain inputs and
the ports it needs (`ports.Ports`), runs its state changes as store transactions, records the
typed event of each change, and returns a result or raises a `errors.FlowError` with a code.
"""
