"""Image copy detection (specs/copy_detection.md): PixTrace + CopyNCE, SSCD, the ISC protocols.

`provjax copydetect` writes the official ISC2021 prediction CSV; `provjax eval isc`
scores one with the official metrics (`provjax.metrics.isc`).
"""
