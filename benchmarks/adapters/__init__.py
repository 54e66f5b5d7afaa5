"""One module a peer: each a `Sandbox` (base.py) named `Adapter`; peers.py compares them."""
