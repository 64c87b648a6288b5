"""On which hardware: devices, placement over cards, the roofline and datasheets, measured ceilings,
microbenchmarks and the canary."""
