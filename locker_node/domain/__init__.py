"""Pure business logic of a locker node: doors, codes, parcels."""
