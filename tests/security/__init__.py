"""Adversarial suite: hostile programs against the sandbox and its boundary.

A package so the test modules can share `support` (expected outcomes, the bug marker).
"""
