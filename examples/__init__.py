"""Example tool catalogs (installed as `ptc.examples`), used by `ptc demo`."""
