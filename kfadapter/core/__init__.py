"""The shared core: errors, limits, safe streaming decoders (gzip, tar), logging and metrics, held temp dirs, the version.

Leaf package: imports nothing else of the adapter.
"""
