"""Lock-control boards: the `LockBoard` seam, serial and GPIO drivers, simulators."""
