"""How the node's computer is doing, for the heartbeat: uptime, disk, temperatures, UPS power."""
